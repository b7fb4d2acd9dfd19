#!/usr/bin/env bash
# The DB environment's MySQL/MariaDB client (pure Python); the MariaDB server itself comes from
# 20-apt.sh (mariadb-server). The default SQLite backend needs nothing.
set -euo pipefail
.venv/bin/python -c "import pymysql" 2>/dev/null || .venv/bin/pip install -q "PyMySQL>=1.1"
