-- Run once by the official TimescaleDB image on an empty data directory (compose.yaml mounts
-- this folder at /docker-entrypoint-initdb.d). The platform's own database (POSTGRES_DB) is
-- created by the image; Dagster's is created by `ats serve`; these two hold Feast's registry
-- and Optuna's studies, each in its own database so a restore of the platform leaves them be.
CREATE DATABASE ats_feast;
CREATE DATABASE ats_optuna;
