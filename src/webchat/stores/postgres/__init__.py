"""PostgreSQL stores (psycopg 3 + psycopg_pool): the same protocols and contract as the SQLite ones."""
