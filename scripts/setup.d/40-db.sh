#!/usr/bin/env bash
# The DB environment's MySQL/MariaDB client (pure Python); the MariaDB server itself comes from
# 20-apt.sh (mariadb-server). The default SQLite backend needs nothing.
# (PyMySQL is in requirements.txt.) Nothing else to do here.
set -euo pipefail
.venv/bin/python -c "import pymysql"
