-- Schema for the concurrency lab. Plain SQL so the same file works for the native runner
-- (services/lab) and for /docker-entrypoint-initdb.d in compose; every statement is
-- idempotent because the native runner applies it on every start.

create table if not exists items (
    id          bigint primary key,
    name        text not null,
    price_cents integer not null check (price_cents >= 0),
    created_at  timestamptz not null default now()
);

create table if not exists orders (
    id         bigserial primary key,
    item_id    bigint not null references items (id),
    quantity   integer not null check (quantity > 0),
    note       text,
    created_at timestamptz not null default now()
);

-- Postgres does not index the referencing side of a foreign key; without this, per-item order
-- lookups and deletes from items would scan the whole (growing) orders table under load.
create index if not exists orders_item_id_idx on orders (item_id);
