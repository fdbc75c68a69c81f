"""Security: what regsweep starts listens on loopback only; Dask TLS passes through; nothing unpickles or shells out.

- the embedded LocalCluster (scheduler, nannies, workers, dashboard) is
  started in a child process and the listening TCP sockets of that process
  tree are read from /proc: every one must be on 127.0.0.1;
- ``cluster.security`` makes the LocalCluster and the client speak TLS with a
  certificate made here (the remote-scheduler case is in
  tests/integration/test_tls.py);
- a model file holding a pickled object, and a YAML config with a Python tag,
  are refused without running the payload; the package source holds no
  shell, eval or unpickling calls.
"""

from __future__ import annotations

import ast
import os
import pickle
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from pipeline.config import load_config
from pipeline.errors import ConfigError, DataError
from pipeline.model import FittedModel
from tests.certs import make_tls_files

PACKAGE = Path(__file__).resolve().parents[1] / "pipeline"


# ------------------------------------------------------------ listening sockets
def _descendants(root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    out, todo = set(), [root]
    while todo:
        pid = todo.pop()
        out.add(pid)
        todo.extend(children.get(pid, []))
    return out


def _socket_inodes(pids: set[int]) -> set[int]:
    inodes = set()
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:["):
                inodes.add(int(link[8:-1]))
    return inodes


def _listening(pid: int) -> list[tuple[str, int]]:
    """(address, port) of every listening TCP socket (IPv4 and IPv6) owned by ``pid`` or its descendants."""
    pids = _descendants(pid)
    inodes = _socket_inodes(pids)
    found = []
    for table, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        for line in lines:
            fields = line.split()
            local, state, inode = fields[1], fields[3], int(fields[9])
            if state != "0A" or inode not in inodes:  # 0A: LISTEN
                continue
            hex_addr, hex_port = local.split(":")
            raw = bytes.fromhex(hex_addr)
            # /proc prints the address as 32-bit words in host (little-endian) order
            raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
            found.append((socket.inet_ntop(family, raw), int(hex_port, 16)))
    return found


@pytest.mark.skipif(not Path("/proc/self/net/tcp").exists(), reason="needs Linux /proc")
@pytest.mark.parametrize("overrides", [[], ["cluster.dashboard_address=null", "cluster.processes=false"]],
                         ids=["defaults", "no-dashboard-threads"])
def test_everything_the_embedded_cluster_starts_listens_on_loopback(tmp_path, overrides):
    script = textwrap.dedent(f"""
        import sys
        from pipeline.cv import open_client
        from pipeline.config import load_config
        with open_client(load_config(None, {overrides!r}).cluster) as client:
            info = client.scheduler_info()
            print(client.scheduler.address, client.dashboard_link, *sorted(info["workers"]), flush=True)
            sys.stdin.readline()
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=tmp_path, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline().split()
        assert line, proc.stderr.read()
        scheduler, dashboard, workers = line[0], line[1], line[2:]
        sockets = _listening(proc.pid)
    finally:
        proc.stdin.close()
        proc.wait(timeout=60)
    ports = {port for _, port in sockets}
    assert len(workers) == 2
    for address in (scheduler, *workers):  # tcp://127.0.0.1:PORT
        assert address.startswith("tcp://127.0.0.1:") and int(address.rsplit(":", 1)[1]) in ports, (address, sockets)
    if not overrides:
        assert dashboard.startswith("http://127.0.0.1:")
        assert int(dashboard.split(":")[2].split("/")[0]) in ports, (dashboard, sockets)
        assert len(sockets) >= 6, sockets  # scheduler, dashboard, two workers and their nannies at least
    assert all(host == "127.0.0.1" for host, _ in sockets), sockets


# ---------------------------------------------------------------------- TLS
def test_tls_config_makes_the_local_cluster_speak_tls(tmp_path):
    from distributed import Client

    from pipeline.cv import open_client
    from pipeline.errors import ClusterError

    tls = make_tls_files(tmp_path)
    cfg = load_config(None, [f"cluster.security.{k}={v}" for k, v in tls.items()]
                      + ["cluster.processes=false", "cluster.dashboard_address=null"])
    with open_client(cfg.cluster) as client:
        address = client.scheduler.address
        assert address.startswith("tls://127.0.0.1:")
        assert client.submit(sum, [1, 2, 3]).result() == 6
        with pytest.raises((OSError, TypeError, ValueError)):  # no certificate: refused
            Client(address, timeout=3, set_as_default=False)
    with pytest.raises(ClusterError, match="cannot reach"):
        with open_client(load_config(None, [f"cluster.security.{k}={v}" for k, v in tls.items()]
                                     + ["cluster.address=tls://127.0.0.1:9"]).cluster):
            pass


def test_tls_config_errors_name_the_key(tmp_path):
    tls = make_tls_files(tmp_path)
    with pytest.raises(ConfigError, match=r"cluster.security.tls_client_cert: must be an existing PEM file, got 'nope.pem'"):
        load_config(None, [f"cluster.security.tls_ca_file={tls['tls_ca_file']}", "cluster.security.tls_client_cert=nope.pem"])
    with pytest.raises(ConfigError, match=r"cluster.security \(TLS\) needs a tls:// scheduler address"):
        load_config(None, [f"cluster.security.{k}={v}" for k, v in tls.items()] + ["cluster.address=tcp://127.0.0.1:8786"])
    with pytest.raises(ConfigError, match=r"cluster.security.tls_ca: unknown key; did you mean 'cluster.security.tls_ca_file'"):
        load_config(None, ["cluster.security.tls_ca=x"])


# -------------------------------------------------------- no unpickling, safe YAML
class _Payload:
    """Unpickling this creates a marker file: proof that a loader ran pickle."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_model_file_holding_a_pickle_is_refused_without_running_it(tmp_path, diabetes):
    import pipeline

    X, y = diabetes
    model_dir = pipeline.fit(X, y, penalty="l2", lambda2=1.0).save(tmp_path / "m")
    marker = tmp_path / "unpickled"
    coef = np.empty(1, dtype=object)
    coef[0] = _Payload(marker)
    np.savez(model_dir / "arrays.npz", coef=coef, x_mean=np.zeros(10), x_scale=np.ones(10))
    assert pickle.loads(pickle.dumps(_Payload(tmp_path / "probe"))) is None and (tmp_path / "probe").exists()
    with pytest.raises(DataError, match="regsweep never unpickles"):
        FittedModel.load(model_dir)
    assert not marker.exists()


def test_yaml_python_tags_are_refused_without_running_them(tmp_path):
    marker = tmp_path / "ran"
    payload = f"!!python/object/apply:pathlib.Path.touch [!!python/object/apply:pathlib.Path ['{marker}']]"
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"search:\n  study_name: {payload}\n")
    with pytest.raises(ConfigError, match="is not valid YAML"):
        load_config(cfg)
    with pytest.raises(ConfigError, match="the value is not valid YAML"):
        load_config(None, [f"search.study_name={payload}"])
    assert not marker.exists()


# ------------------------------------------------------------- source audit
_FORBIDDEN_CALLS = {
    ("os", "system"), ("os", "popen"), ("os", "execv"), ("os", "execvp"), ("os", "spawnl"),
    ("pickle", "load"), ("pickle", "loads"), ("cloudpickle", "load"), ("cloudpickle", "loads"),
    ("marshal", "loads"), ("yaml", "load"), ("yaml", "unsafe_load"), ("yaml", "full_load"),
    ("subprocess", "getoutput"), ("subprocess", "getstatusoutput"),
}


def _dotted(node: ast.AST) -> tuple[str, ...]:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    return tuple(reversed(parts))


def _audit(tree: ast.AST) -> list[str]:
    problems = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func)
        kwargs = {k.arg: k.value for k in node.keywords}
        where = f"line {node.lineno}: {'.'.join(name)}"
        if name[-2:] in _FORBIDDEN_CALLS or name in {("eval",), ("exec",)}:
            problems.append(f"{where} (shell, eval or unpickling)")
        shell = kwargs.get("shell")
        if shell is not None and not (isinstance(shell, ast.Constant) and shell.value is False):
            problems.append(f"{where} with shell=")
        if name[-1:] == ("load",) and name[:-1] in {("np",), ("numpy",)}:
            ap = kwargs.get("allow_pickle")
            if not (isinstance(ap, ast.Constant) and ap.value is False):
                problems.append(f"{where} without allow_pickle=False")
    return problems


def test_the_audit_finds_what_it_looks_for():
    bad = ast.parse("import os, subprocess, numpy as np, yaml\nos.system(c)\nsubprocess.run(c, shell=True)\n"
                    "np.load(p)\nyaml.load(t)\neval(s)\nnp.load(p, allow_pickle=True)\n")
    assert len(_audit(bad)) == 6
    good = ast.parse("np.load(p, allow_pickle=False)\nyaml.safe_load(t)\nsubprocess.run([a, b])\n")
    assert _audit(good) == []


def test_package_source_has_no_shell_eval_or_unpickling_calls():
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 10
    problems = {str(f.relative_to(PACKAGE)): _audit(ast.parse(f.read_text(), str(f))) for f in files}
    assert {k: v for k, v in problems.items() if v} == {}
