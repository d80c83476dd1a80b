"""Every SQL statement of the lab, once. Placeholders are asyncpg's $1..$n; the psycopg2
wrapper rewrites them, so both drivers run the very same text."""

ITEM = "SELECT id, name, price_cents, created_at FROM items WHERE id = $1"

# pg_sleep keeps a connection busy server-side for delay_ms, then the row proves a real read.
SLOW_ITEM = (
    "SELECT i.id, i.name, i.price_cents, i.created_at"
    " FROM (SELECT pg_sleep($1::int / 1000.0)) AS s, items AS i WHERE i.id = $2"
)

# The SELECT makes an unknown item_id insert nothing (-> 422) instead of a foreign-key error.
INSERT_ORDER = (
    "INSERT INTO orders (item_id, quantity, note)"
    " SELECT id, $2, $3 FROM items WHERE id = $1"
    " RETURNING id, item_id, quantity, note, created_at"
)

PING = "SELECT 1 AS ok"
