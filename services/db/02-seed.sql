-- 100,000 deterministic items, generated server-side so seeding is one round trip.
-- Prices use a multiplicative (Knuth) hash of the id: stable across runs and machines,
-- yet spread over 1.00 .. 999.99 instead of growing with the id.
insert into items (id, name, price_cents)
select i, 'item ' || i, 100 + ((i * 2654435761) % 99900)::integer
from generate_series(1::bigint, 100000::bigint) as i
on conflict (id) do nothing;

-- Fresh planner statistics, so the first load test does not run on default estimates.
analyze items;
analyze orders;
