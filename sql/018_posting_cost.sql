-- 018_posting_cost.sql - what every posting costs PostgreSQL, made smaller (docs/design.md,
-- "What a posting costs").
--
-- Measured in one backend, 8 plain folio.post calls per fl_batch, committing after each
-- (2 cores, PostgreSQL 15): about 2,600 us of CPU a batch, 330 us a posting. Three things in
-- it were cost without use:
--
--   1. The folios' CHECK constraints. PostgreSQL checks every CHECK constraint of a table at
--      every UPDATE of a row, whatever the columns changed, and reads the constraints'
--      expressions again for each statement. Every posting updates its folio's balance (the
--      postings trigger), so every posting paid for ten expressions about the folio's type,
--      stay, window, group, name, status and closing: about 23 us of a 33 us UPDATE, measured
--      on a copy of the table. fl_folios_guard, which already runs at every insert and update
--      of a folio, now checks the same conditions itself, in the same order: all of them when
--      a folio is inserted, and on an update that changes status, name or closed_at the five
--      that read those columns (the others read only columns the guard keeps from changing).
--      PL/pgSQL keeps its prepared expressions for the session, so a balance update pays for
--      none of them. A violation is still check_violation (23514), named as the constraint
--      was. A CHECK constraint saw the row after every BEFORE trigger; the guard sees it in
--      its turn, so a later BEFORE trigger on folios that changes the row must sort before
--      folios_guard. And a CHECK constraint also held where triggers do not fire: a restore
--      (pg_dump creates triggers after loading the data), session_replication_role = replica,
--      a disabled trigger. Those paths bypass the balance rule of the same trigger already.
--      The city-ledger trigger of 008 (a city-ledger folio never closes) is folded into the
--      guard as well: its WHEN clause too was read again at every update.
--   2. Two foreign keys that others imply: postings.property_id and pos_requests.property_id
--      each referenced properties, while their composite keys (property_id, folio_id) and
--      (property_id, outlet_id), whose second columns are NOT NULL, already reference rows
--      that reference the property. Each cost a check (a FOR KEY SHARE of the property row)
--      per row.
--   3. fl_batch_plain_read found the charge code by the property alone and tested the
--      routing rules against every code of the property before matching the code (72 tests
--      for 8 calls in a property of 9 charge codes; a hotel with 200 codes would pay 200 a
--      call). It now finds the one code first.
--
-- Applied once by the migrate command inside one transaction; never edited once landed.

-- 1. The folios' conditions, checked by the guard (the constraints of 004 and 008, by name: a
-- name that differs stops the migration)
ALTER TABLE folios
    DROP CONSTRAINT folios_check, DROP CONSTRAINT folios_check1, DROP CONSTRAINT folios_check2,
    DROP CONSTRAINT folios_check3, DROP CONSTRAINT folios_check4, DROP CONSTRAINT folios_check5,
    DROP CONSTRAINT folios_name_check, DROP CONSTRAINT folios_status_check,
    DROP CONSTRAINT folios_type_check, DROP CONSTRAINT folios_window_no_check;

DROP TRIGGER folios_city_ledger_open ON folios;
DROP FUNCTION fl_folios_city_ledger_guard();

-- Raises check_violation for the named condition of a folio.
CREATE FUNCTION fl_folio_check_fail(v_name text, v_condition text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'new row for relation "folios" violates check constraint "%"', v_name
        USING ERRCODE = 'check_violation', CONSTRAINT = v_name, TABLE = 'folios',
              DETAIL = format('A folio must satisfy: %s.', v_condition);
END
$$;

-- The balance moves only through postings; the identity of a folio never changes; the
-- conditions of a folio's row (once its CHECK constraints, see above) hold. They are tested as
-- PostgreSQL tested the constraints, so that a row breaking several gets the same error: none
-- while a NOT NULL column is NULL (the NOT NULL check, which came first, then refuses the row),
-- then in the order of their names.
CREATE OR REPLACE FUNCTION fl_folios_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_all boolean := TG_OP = 'INSERT';
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF NEW.balance <> 0 THEN
            PERFORM fl_fail('immutable', 'a folio opens with a zero balance');
        END IF;
    ELSE
        IF OLD.type = 'city_ledger' AND NEW.status <> 'open' THEN
            PERFORM fl_fail('use_ar', format('folio %s is a city-ledger account''s folio: it '
                                             'never closes', OLD.number));
        END IF;
        -- depth 2 = the UPDATE made by the postings trigger; anything else is a direct change
        IF NEW.balance IS DISTINCT FROM OLD.balance AND pg_trigger_depth() < 2 THEN
            PERFORM fl_fail('immutable', 'a folio balance changes only through postings');
        END IF;
        IF NEW.property_id <> OLD.property_id OR NEW.type <> OLD.type
           OR NEW.stay_id IS DISTINCT FROM OLD.stay_id
           OR NEW.window_no IS DISTINCT FROM OLD.window_no
           OR NEW.group_id IS DISTINCT FROM OLD.group_id THEN
            PERFORM fl_fail('immutable', 'the property, type, stay, window and group of a '
                            'folio never change');
        END IF;
        -- Past the test above, type, stay_id, window_no and group_id are those of a row that
        -- held every condition, so an update is tested only on the conditions that read
        -- status, name or closed_at, and only when one of them changed (a balance update
        -- changes none). Letting any of those four columns change would mean testing every
        -- condition on every update.
        IF NEW.status IS NOT DISTINCT FROM OLD.status AND NEW.name IS NOT DISTINCT FROM OLD.name
           AND NEW.closed_at IS NOT DISTINCT FROM OLD.closed_at THEN
            RETURN NEW;
        END IF;
    END IF;
    IF NEW.id IS NULL OR NEW.property_id IS NULL OR NEW.type IS NULL OR NEW.status IS NULL
       OR NEW.balance IS NULL OR NEW.created_at IS NULL OR NEW.created_by IS NULL
       OR NEW.updated_at IS NULL OR NEW.updated_by IS NULL THEN
        RETURN NEW;
    END IF;
    IF v_all AND (NEW.type = 'individual') <> (NEW.stay_id IS NOT NULL) THEN
        PERFORM fl_folio_check_fail('folios_check', 'an individual folio, and only one, '
                                    'belongs to a stay');
    END IF;
    IF v_all AND (NEW.stay_id IS NULL) <> (NEW.window_no IS NULL) THEN
        PERFORM fl_folio_check_fail('folios_check1', 'a folio of a stay has a window, and only '
                                    'one');
    END IF;
    IF v_all AND (NEW.type = 'master') <> (NEW.group_id IS NOT NULL) THEN
        PERFORM fl_folio_check_fail('folios_check2', 'a master folio, and only one, belongs to '
                                    'a group');
    END IF;
    IF NOT (NEW.type IN ('individual', 'master') OR NEW.name IS NOT NULL) THEN
        PERFORM fl_folio_check_fail('folios_check3', 'a folio other than an individual or '
                                    'master one has a name');
    END IF;
    IF (NEW.status = 'closed') <> (NEW.closed_at IS NOT NULL) THEN
        PERFORM fl_folio_check_fail('folios_check4', 'a closed folio, and only one, has '
                                    'closed_at');
    END IF;
    IF NEW.type = 'permanent' AND NEW.status <> 'open' THEN
        PERFORM fl_folio_check_fail('folios_check5', 'a permanent folio stays open');
    END IF;
    IF btrim(NEW.name) = '' OR length(NEW.name) > 200 THEN
        PERFORM fl_folio_check_fail('folios_name_check', 'a name is not blank and has at most '
                                    '200 characters');
    END IF;
    IF NEW.status NOT IN ('open', 'closed') THEN
        PERFORM fl_folio_check_fail('folios_status_check', 'status is open or closed');
    END IF;
    IF v_all AND NEW.type NOT IN ('individual', 'master', 'non_guest', 'employee', 'control',
                                  'semi_permanent', 'permanent', 'city_ledger') THEN
        PERFORM fl_folio_check_fail('folios_type_check', 'type is one of individual, master, '
                                    'non_guest, employee, control, semi_permanent, permanent, '
                                    'city_ledger');
    END IF;
    IF v_all AND NEW.window_no NOT BETWEEN 1 AND 8 THEN
        PERFORM fl_folio_check_fail('folios_window_no_check', 'window_no is from 1 to 8');
    END IF;
    RETURN NEW;
END
$$;

-- 2. Foreign keys that the composite ones imply
ALTER TABLE postings DROP CONSTRAINT postings_property_id_fkey;
ALTER TABLE pos_requests DROP CONSTRAINT pos_requests_property_id_fkey;

-- 3. The plain calls of a batch (017), with the charge code found by property and code before
-- the routing rules are tested against it.
CREATE OR REPLACE FUNCTION fl_batch_plain_read(calls jsonb) RETURNS fl_batch_post[]
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN (
        SELECT array_agg(ROW(e.ord, e.c -> 'ctx', f.id, f.property_id, co.id, q.amount, q.quantity,
                             coalesce(nullif(btrim(q.description), ''), co.description),
                             nullif(btrim(q.reference), ''))::fl_batch_post ORDER BY e.ord)
          FROM jsonb_array_elements(calls) WITH ORDINALITY AS e(c, ord)
          CROSS JOIN LATERAL fl_folio_post_plain(e.c -> 'p') q
          JOIN folios f ON f.id = coalesce(q.folio_id, (SELECT w.id FROM folios w
                                                          WHERE w.stay_id = q.stay_id
                                                            AND w.window_no = q.window_no))
          LEFT JOIN stays s ON s.id = f.stay_id
          -- LIMIT keeps the lookup a subquery of its own: the conditions below are tested
          -- once, on the code found
          CROSS JOIN LATERAL (SELECT x.* FROM trx_codes x
                               WHERE x.property_id = f.property_id AND x.code = q.code
                               LIMIT 1) co
         WHERE e.c ->> 'm' = 'folio.post' AND q.ok
           AND f.status = 'open' AND f.type NOT IN ('master', 'city_ledger')
           AND co.kind = 'charge' AND co.enabled
           AND NOT EXISTS (SELECT 1 FROM trx_codes po
                            WHERE po.code = q.code AND po.kind = 'paid_out')
           AND NOT EXISTS (SELECT 1 FROM trx_code_rules cr WHERE cr.code_id = co.id)
           AND (fl_ctx_property(e.c -> 'ctx') IS NULL
                OR (f.property_id = fl_ctx_property(e.c -> 'ctx')
                    AND (q.stay_id IS NULL OR s.property_id = fl_ctx_property(e.c -> 'ctx'))))
           AND (f.stay_id IS NULL OR s.credit_limit IS NULL)
           AND (f.stay_id IS NULL OR f.window_no <> 1
                OR NOT EXISTS (SELECT 1 FROM routing_rules rr
                                WHERE rr.stay_id = f.stay_id AND rr.active
                                  AND (rr.code_id = co.id
                                       OR (rr.code_id IS NULL
                                           AND rr.department = co.department)))));
END
$$;
