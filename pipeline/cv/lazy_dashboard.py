"""The embedded scheduler's dashboard, connected on its first visit instead of at the cluster's start.

Dask's scheduler imports its Bokeh dashboard as it starts (``distributed.dashboard.scheduler``: Bokeh, Jinja2,
Pygments, about 260 modules): 0.2–0.4 s of the driver's CPU on the critical path of every sweep, for a page most
sweeps never show. Here the scheduler starts without it, its HTTP server on the same address (``/health``,
``/info``, ``/metrics`` answer as before), and a fallback route takes the first request for any other path:
it imports and connects the dashboard exactly as the scheduler would have (``connect`` on the scheduler's own
HTTP application, in its event loop), removes itself, and redirects the browser to the same address, which
the dashboard now serves. The link printed at the start stays valid from the first moment.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from distributed import Scheduler

__all__ = ["SCHEDULER_KWARGS", "serve_dashboard_on_first_visit"]

# what LocalCluster's scheduler is started with: its HTTP server on the dashboard's address, Bokeh not imported
SCHEDULER_KWARGS = {"dashboard": False}


async def serve_dashboard_on_first_visit(scheduler: Scheduler, prefix: str = "/") -> None:
    """Install the fallback route on ``scheduler`` (started with :data:`SCHEDULER_KWARGS`), in its event loop."""
    from tornado import web

    routing = scheduler.http_application

    class ConnectDashboard(web.RequestHandler):
        def get(self, *_: Any) -> None:
            if fallback in routing.applications:  # the first visit: connect, leave the routing to Bokeh
                routing.applications.remove(fallback)
                try:
                    import distributed.dashboard.scheduler
                except ImportError:  # as the scheduler itself says without Bokeh
                    self.set_status(404)
                    self.finish("The dashboard needs Bokeh: pip install bokeh")
                    return
                distributed.dashboard.scheduler.connect(routing, scheduler.http_server, scheduler, prefix=prefix)
            self.redirect(self.request.uri or "/")

    fallback = web.Application([(r"/.*", ConnectDashboard)])
    routing.add_application(fallback)
