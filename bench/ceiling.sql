-- bench/ceiling.sql - the tables of the pgbench ceiling (bench/run.sh, make bench).
-- What one folio.post does at its core, in plain SQL: a posting row with a unique key goes in,
-- the folio's balance row is updated, both in one transaction (bench/posting.pgbench). One
-- balance row per pgbench client, as each foliod connection posts to its own stay. Recreated
-- for every make bench run; nothing of foliod's schema is touched.
DROP TABLE IF EXISTS bench_postings, bench_balances;

CREATE TABLE bench_balances (
    folio_id bigint PRIMARY KEY,
    balance bigint NOT NULL DEFAULT 0
);

CREATE TABLE bench_postings (
    id bigserial PRIMARY KEY,
    key text NOT NULL UNIQUE,
    folio_id bigint NOT NULL REFERENCES bench_balances (folio_id),
    amount bigint NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

INSERT INTO bench_balances (folio_id) SELECT g FROM generate_series(1, 1024) AS g;
VACUUM ANALYZE bench_balances;
