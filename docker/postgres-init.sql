-- The postgres image creates the database `regsweep` (Optuna studies, retrain locks);
-- MLflow's backend store gets its own database.
CREATE DATABASE mlflow OWNER regsweep;
