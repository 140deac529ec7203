-- 017_batch_lock_order.sql - batches take their locks in one order (docs/design.md, "Group
-- commit", "Deadlocks between batches").
--
-- Two batches written at once each hold the rows of the calls they have run until they
-- commit. When their calls reach the same stays and folios in different orders (two outlets
-- posting to one room, say, each in its own batch), each batch ends up waiting for a row the
-- other holds: a deadlock, which PostgreSQL finds only after deadlock_timeout (1 s). Losing
-- it rolls back one call, not the batch: the batch goes on holding its rows, its next call
-- can meet the other batch again, and a whole batch could spend its time budget losing
-- deadlocks one second at a time (every call answered busy).
--
-- So:
--   - fl_batch_lock_ahead: before any call runs, the batch locks what its calls will write
--     to, class by class and each class in id order: the outlets of its pos.post calls, the
--     properties, the stays, then the folios named that belong to no stay (house accounts).
--     The stays are those the pos.post calls name (the in-house stay of the room, or the
--     stay_id, read as api_pos_post reads them), those of the folios the folio.post calls
--     name, and the stays whose folios the active routing rules of those stays send charges
--     to. A folio of a stay is not locked ahead but guarded by its stay: every batch that
--     writes to it holds its stay first, so two batches never hold such folios against each
--     other. (Locking the folio itself ahead would cost a MultiXact per posting: a row locked
--     by one (sub)transaction and then updated by another, the call's, has to keep both.)
--     Batches take their locks in the same order, so they wait for each other but cannot
--     deadlock over them.
--   - What is not locked ahead is locked when a call reaches it, as before: a stay found only
--     as checked out within a late-charge window, and a group's master folio (a posting
--     reaches it after its own stay, while a group's check-out takes the master before the
--     members' stays: locking the master ahead would add a circle). Writers outside batches
--     that take a stay's folios without the stay (a single folio.post, a transfer, the
--     audit's postings) can still close a circle with a batch, as they could before.
--   - The lock-ahead may wait for locks until half of the batch's time to wait for locks has
--     passed (see 016). A row held longer than that by something else makes the batch give up
--     its lock-ahead (a warning in the log): every call, the plain ones too, then takes its
--     locks as it reaches them, so that only the calls that need the row wait for it.
--   - fl_batch: when a call loses a deadlock all the same, the batch stops there: the calls
--     it has run commit and release their rows, the one that lost is answered with 40P01 and
--     the calls not yet run are answered {"again": true}; foliod sends both again in a later
--     batch. If the lock-ahead itself loses one, no call has run and every call is "again".
--   - fl_batch_plain_posts (016) is now two halves: fl_batch_plain_read before the
--     lock-ahead, which locks the plain calls' stays (and house accounts) with the others',
--     and fl_batch_plain_write after it, which locks their folios as 016 did.
--
-- Applied once by the migrate command inside one transaction; never edited once landed.

-- A JSON number that can be an id (an integer from 1 to 2^53 - 1), else NULL. The calls'
-- parameters are checked by their API functions; the lock-ahead only reads what it can.
CREATE FUNCTION fl_batch_id(v jsonb) RETURNS bigint
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN jsonb_typeof(v) = 'number' AND scale(v::text::numeric) = 0
                     AND v::text::numeric BETWEEN 1 AND 9007199254740991
                THEN (v::text::numeric)::bigint END
$$;

-- The batch's plain folio.post calls (016) and what fl_post_charge would read for them; reads
-- only, locks nothing. The first half of fl_batch_plain_posts (016), which fl_batch now runs
-- in two halves with the lock-ahead between them. PL/pgSQL, not SQL: a SQL function's query
-- is planned again at every call, which cost a third of a batch's time.
CREATE FUNCTION fl_batch_plain_read(calls jsonb) RETURNS fl_batch_post[]
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
          JOIN trx_codes co ON co.property_id = f.property_id AND co.code = q.code
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

-- The plain calls read by fl_batch_plain_read, written; the second half of
-- fl_batch_plain_posts (016), with its answers. Takes the locks of fl_post_charge, property
-- then folios in id order (already held when the lock-ahead has run); a call whose folio was
-- closed meanwhile is left out, to go the usual way. Raises on any failure, writing nothing.
CREATE FUNCTION fl_batch_plain_write(todo fl_batch_post[]) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    ids bigint[];
    v_open bigint[];
    answers jsonb;
BEGIN
    IF todo IS NULL THEN
        RETURN '[]'::jsonb;
    END IF;
    PERFORM 1 FROM properties
     WHERE id = ANY (ARRAY(SELECT DISTINCT t.property_id FROM unnest(todo) t))
     ORDER BY id FOR SHARE;
    SELECT array_agg(l.id) INTO v_open
      FROM (SELECT f.id, f.status FROM folios f
             WHERE f.id = ANY (ARRAY(SELECT DISTINCT t.folio_id FROM unnest(todo) t))
             ORDER BY f.id FOR NO KEY UPDATE) l
     WHERE l.status = 'open';
    SELECT array_agg(t ORDER BY t.i) INTO todo FROM unnest(todo) t WHERE t.folio_id = ANY (v_open);
    IF todo IS NULL THEN
        RETURN '[]'::jsonb;
    END IF;
    -- posting ids in the order of the calls
    SELECT array_agg(v ORDER BY v) INTO ids
      FROM (SELECT nextval(pg_get_serial_sequence('postings', 'id')) AS v
              FROM generate_series(1, cardinality(todo))) s;

    WITH b AS (
        SELECT t.*, d.posting_id
          FROM unnest(todo) WITH ORDINALITY
               AS t(i, ctx, folio_id, property_id, code_id, amount, quantity, description,
                    reference, ord)
          JOIN unnest(ids) WITH ORDINALITY AS d(posting_id, ord) ON d.ord = t.ord
    ), ins AS (
        INSERT INTO postings (id, property_id, folio_id, business_date, trx_code_id, type, amount,
                              quantity, unit_amount, description, reference, source, operator,
                              user_id, outlet_id)
        SELECT b.posting_id, b.property_id, b.folio_id, pr.business_date, b.code_id, 'charge',
               b.amount * b.quantity, b.quantity, b.amount, b.description, b.reference,
               fl_ctx_source(b.ctx), fl_actor(b.ctx), (b.ctx ->> 'user_id')::bigint,
               (b.ctx ->> 'outlet_id')::bigint
          FROM b JOIN properties pr ON pr.id = b.property_id
         ORDER BY b.posting_id
        RETURNING *
    ), logged AS (
        INSERT INTO change_log (actor, property_id, entity, entity_id, action, detail)
        SELECT fl_actor(b.ctx), p.property_id, 'folio', p.folio_id, 'post',
               jsonb_build_object('posting_id', p.id, 'code', co.code, 'amount', p.amount,
                                  'quantity', p.quantity, 'total', p.amount,
                                  'source', p.source, 'routed_from_folio_id', NULL)
               || CASE WHEN b.ctx ? 'via' THEN jsonb_build_object('via', b.ctx -> 'via')
                       ELSE '{}'::jsonb END
          FROM ins p JOIN b ON b.posting_id = p.id
          JOIN trx_codes co ON co.id = p.trx_code_id
         ORDER BY p.id
    )
    SELECT jsonb_agg(jsonb_build_object('i', a.i, 'ok', a.answer) ORDER BY a.i) INTO answers
      FROM (SELECT b.i,
                   jsonb_build_object(
                       'posting', pj.j, 'postings', jsonb_build_array(pj.j), 'total', p.amount,
                       'folio', fl_folio_brief(f) || jsonb_build_object(
                           'balance', f.balance + sum(p.amount) OVER (PARTITION BY p.folio_id
                                                                      ORDER BY p.id)),
                       'routed', false, 'routed_from_folio_id', NULL,
                       'warnings', '[]'::jsonb, 'data', '{}'::jsonb) AS answer
              FROM ins p
              JOIN b ON b.posting_id = p.id
              JOIN trx_codes co ON co.id = p.trx_code_id
              JOIN folios f ON f.id = p.folio_id
              CROSS JOIN LATERAL (SELECT fl_posting_json(p::postings, co) AS j) pj) a;
    RETURN answers;
END
$$;

-- 016's function, now its two halves (the answers are the same).
CREATE OR REPLACE FUNCTION fl_batch_plain_posts(calls jsonb) RETURNS jsonb
LANGUAGE sql AS $$
    SELECT fl_batch_plain_write(fl_batch_plain_read(calls))
$$;

-- Sets lock_timeout to what is left until v_until (NULL: no limit), or raises 55P03 when
-- nothing is left: lock_timeout bounds each wait, and the lock-ahead waits up to four times.
CREATE FUNCTION fl_batch_lock_wait(v_until timestamptz) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v_left bigint;
BEGIN
    IF v_until IS NULL THEN
        RETURN;
    END IF;
    v_left := (extract(epoch FROM v_until - clock_timestamp()) * 1000)::bigint;
    IF v_left < 1 THEN
        RAISE EXCEPTION 'the batch''s time to wait for locks ahead is spent'
            USING ERRCODE = 'lock_not_available';
    END IF;
    PERFORM set_config('lock_timeout', v_left::text, true);
END
$$;

-- Locks ahead what the batch's calls will write to (see above): the outlets of the pos.post
-- calls, the properties, the stays, and the folios named that belong to no stay. Waits for
-- locks until v_until at the latest (NULL: no limit). Raises what the locks raise (40P01,
-- 55P03); reads nothing else and writes nothing.
CREATE FUNCTION fl_batch_lock_ahead(calls jsonb, plain fl_batch_post[], v_until timestamptz)
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v_plain integer[] := ARRAY(SELECT t.i FROM unnest(plain) t);
    v_props bigint[] := ARRAY(SELECT t.property_id FROM unnest(plain) t);
    v_named bigint[] := ARRAY(SELECT t.folio_id FROM unnest(plain) t);  -- folios named
    v_outlets bigint[] := '{}';
    v_stays bigint[] := '{}';
    v_routed bigint[] := '{}';  -- the stays of the other calls, whose routing may apply
    v_folios bigint[];
    c jsonb;
    k integer := 0;
    v_outlet bigint;
    v_property bigint;
    v_stay bigint;
    v_id bigint;
BEGIN
    -- what each other call names, read as its API function reads it (a member that is JSON
    -- null is absent, a room number is trimmed): a pos.post its outlet and the stay of its
    -- room (or its stay_id), a folio.post its folio (by folio_id, or by stay and window)
    FOR c IN SELECT * FROM jsonb_array_elements(calls) LOOP
        k := k + 1;
        CONTINUE WHEN k = ANY (v_plain);
        IF c ->> 'm' = 'pos.post' THEN
            SELECT o.id, o.property_id,
                   CASE WHEN coalesce(jsonb_typeof(c -> 'p' -> 'stay_id'), 'null') <> 'null' THEN
                            (SELECT s.id FROM stays s
                              WHERE s.id = fl_batch_id(c -> 'p' -> 'stay_id')
                                AND s.property_id = o.property_id)
                        ELSE
                            (SELECT s.id FROM rooms rm
                               JOIN stays s ON s.room_id = rm.id AND s.status = 'in_house'
                              WHERE rm.property_id = o.property_id
                                AND rm.number = btrim(c -> 'p' ->> 'room', E' \t\r\n')
                              ORDER BY s.id LIMIT 1) END
              INTO v_outlet, v_property, v_id
              FROM outlets o WHERE o.id = fl_batch_id(c -> 'ctx' -> 'outlet_id');
            CONTINUE WHEN NOT FOUND;
            v_outlets := v_outlets || v_outlet;
            v_props := v_props || v_property;
            IF v_id IS NOT NULL THEN
                v_stays := v_stays || v_id;
                v_routed := v_routed || v_id;
            END IF;
        ELSIF c ->> 'm' = 'folio.post' THEN
            SELECT w.id, w.property_id, w.stay_id INTO v_id, v_property, v_stay FROM folios w
             WHERE w.id = coalesce(fl_batch_id(c -> 'p' -> 'folio_id'),
                                   (SELECT x.id FROM folios x
                                     WHERE x.stay_id = fl_batch_id(c -> 'p' -> 'stay_id')
                                       AND x.window_no = coalesce(fl_batch_id(c -> 'p' -> 'window'),
                                                                  1)))
               AND (fl_ctx_property(c -> 'ctx') IS NULL
                    OR w.property_id = fl_ctx_property(c -> 'ctx'));
            IF FOUND THEN
                v_named := v_named || v_id;
                v_props := v_props || v_property;
                IF v_stay IS NOT NULL THEN
                    v_routed := v_routed || v_stay;
                END IF;
            END IF;
        END IF;
    END LOOP;
    -- the stays of the folios named: a folio of a stay is guarded by its stay, a folio of none
    -- by itself
    SELECT v_stays || coalesce(array_agg(w.stay_id) FILTER (WHERE w.stay_id IS NOT NULL), '{}'),
           coalesce(array_agg(w.id) FILTER (WHERE w.stay_id IS NULL), '{}')
      INTO v_stays, v_folios
      FROM folios w WHERE w.id = ANY (v_named);
    -- the stays whose folios the active routing rules of the other calls' stays send charges
    -- to (a plain call is one no routing rule concerns). A target of no stay, a master, is
    -- not locked ahead: a posting reaches it after its own stay, and a group's check-out
    -- takes the master before the members' stays.
    IF cardinality(v_routed) > 0 THEN
        v_stays := v_stays || ARRAY(SELECT t.stay_id
                                      FROM routing_rules rr JOIN folios t ON t.id = rr.to_folio_id
                                     WHERE rr.active AND rr.stay_id = ANY (v_routed)
                                       AND t.stay_id IS NOT NULL);
    END IF;

    IF cardinality(v_outlets) > 0 THEN
        PERFORM fl_batch_lock_wait(v_until);
        PERFORM 1 FROM outlets WHERE id = ANY (v_outlets) ORDER BY id FOR NO KEY UPDATE;
    END IF;
    PERFORM fl_batch_lock_wait(v_until);
    PERFORM 1 FROM properties WHERE id = ANY (v_props) ORDER BY id FOR SHARE;
    IF cardinality(v_stays) > 0 THEN
        PERFORM fl_batch_lock_wait(v_until);
        PERFORM 1 FROM stays WHERE id = ANY (v_stays) ORDER BY id FOR NO KEY UPDATE;
    END IF;
    IF cardinality(v_folios) > 0 THEN
        PERFORM fl_batch_lock_wait(v_until);
        PERFORM 1 FROM folios WHERE id = ANY (v_folios) ORDER BY id FOR NO KEY UPDATE;
    END IF;
END
$$;

-- calls: [{"m": method, "ctx": context, "p": params}, ...]; v_budget: milliseconds the calls
-- may spend waiting for locks in all (the daemon sends four fifths of its statement_timeout;
-- 0: no limit). Answers, in the same order:
-- [{"ok": result} | {"error": {"sqlstate", "message", "detail", "hint"}} | {"again": true}].
-- "again": the call was not run (the batch stopped on a deadlock); nothing of it was written.
CREATE OR REPLACE FUNCTION fl_batch(calls jsonb, v_budget integer) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    n integer := jsonb_array_length(calls);
    answers jsonb[] := array_fill(NULL::jsonb, ARRAY[n]);
    again constant jsonb := '{"again": true}';
    stop boolean := false;
    plain fl_batch_post[];
    a jsonb;
    c jsonb;
    i integer;
    v_left bigint;
    v_state text;
    v_message text;
    v_detail text;
    v_hint text;
BEGIN
    IF n = 0 THEN
        RETURN '[]'::jsonb;
    END IF;
    IF n > 1 AND jsonb_path_exists(calls, '$[*] ? (@.m == "folio.post")') THEN
        BEGIN
            plain := fl_batch_plain_read(calls);
        EXCEPTION WHEN OTHERS THEN
            -- not expected: the calls run one by one below, and the log says why
            RAISE WARNING 'fl_batch: plain folio.post calls run one by one: % (%)',
                SQLERRM, SQLSTATE;
        END;
    END IF;
    IF n > 1 THEN
        -- half of the time to wait for locks: a row held too long (by something other than
        -- a batch) makes the calls take their locks one by one, so that only the calls that
        -- need that row are answered busy
        BEGIN
            PERFORM fl_batch_lock_ahead(calls, plain,
                                        CASE WHEN v_budget > 0
                                             THEN statement_timestamp()
                                                  + make_interval(secs => v_budget / 2000.0) END);
        EXCEPTION WHEN deadlock_detected THEN
            RETURN to_jsonb(array_fill(again, ARRAY[n]));
        WHEN OTHERS THEN
            -- a row held for half the budget (55P03), or not expected: every call, the plain
            -- ones too, takes its locks as it reaches them, and the log says why
            plain := NULL;
            RAISE WARNING 'fl_batch: the batch''s locks are taken call by call: % (%)',
                SQLERRM, SQLSTATE;
        END;
    END IF;
    IF v_budget > 0 THEN
        v_left := v_budget - (extract(epoch FROM clock_timestamp() - statement_timestamp())
                              * 1000)::bigint;
        PERFORM set_config('lock_timeout', greatest(v_left, 1)::text, true);
    END IF;
    IF plain IS NOT NULL THEN
        BEGIN
            FOR a IN SELECT * FROM jsonb_array_elements(fl_batch_plain_write(plain)) LOOP
                answers[(a ->> 'i')::integer] := jsonb_build_object('ok', a -> 'ok');
            END LOOP;
        EXCEPTION WHEN OTHERS THEN
            answers := array_fill(NULL::jsonb, ARRAY[n]);
            IF SQLSTATE = '40P01' THEN
                -- nothing has been written: every call goes again
                RETURN to_jsonb(array_fill(again, ARRAY[n]));
            END IF;
            -- a row held too long, or not expected: the calls run one by one below, and the
            -- log says why
            RAISE WARNING 'fl_batch: plain folio.post calls run one by one: % (%)',
                SQLERRM, SQLSTATE;
        END;
    END IF;
    FOR i IN SELECT e.ord FROM jsonb_array_elements(calls) WITH ORDINALITY AS e(c, ord)
              WHERE answers[e.ord] IS NULL
              ORDER BY e.c ->> 'm', (e.c -> 'ctx' ->> 'outlet_id')::bigint NULLS FIRST, e.ord
    LOOP
        IF stop THEN
            answers[i] := again;
            CONTINUE;
        END IF;
        c := calls -> (i - 1);
        IF v_budget > 0 THEN
            v_left := v_budget - (extract(epoch FROM clock_timestamp() - statement_timestamp())
                                  * 1000)::bigint;
            PERFORM set_config('lock_timeout', greatest(v_left, 1)::text, true);
        END IF;
        BEGIN
            answers[i] := jsonb_build_object('ok', fl_batch_call(c ->> 'm', c -> 'ctx', c -> 'p'));
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_message = MESSAGE_TEXT,
                                    v_detail = PG_EXCEPTION_DETAIL, v_hint = PG_EXCEPTION_HINT;
            answers[i] := jsonb_build_object('error', jsonb_build_object(
                'sqlstate', v_state, 'message', v_message,
                'detail', coalesce(v_detail, ''), 'hint', coalesce(v_hint, '')));
            -- a lost deadlock: what has run commits now and frees its rows; the rest go again
            stop := v_state = '40P01';
        END;
    END LOOP;
    RETURN to_jsonb(answers);
END
$$;
