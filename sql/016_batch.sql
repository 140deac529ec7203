-- 016_batch.sql - group commit of postings (docs/design.md, "Group commit").
--
-- foliod gathers the folio.post and pos.post requests that arrive while earlier ones are being
-- written and sends them as one statement, fl_batch(calls): one transaction, one commit, for
-- several postings. Each call gets the answer or the error its API function gives it, with
-- the SQLSTATE, message, detail and hint the daemon would have got from running it alone; a
-- call that fails leaves nothing behind and takes no other call with it.
--
--   - The commonest call, folio.post of a charge code without tax or service rules to an open
--     folio that no routing rule, credit limit or master account concerns, is written for all
--     such calls of the batch at once by fl_batch_plain_posts: one read, one lock of their
--     folios (in id order), one INSERT of their postings (the row trigger postings_insert still
--     checks each line and moves each balance), one INSERT of their change-log rows. Each gets
--     the answer fl_post_charge (012) would have given it, posting ids in the order of the
--     calls, and the balance shown is the folio's after that call's posting, as if the calls
--     had run one after the other. Only calls for which that is certain take this way: the
--     conditions are those under which api_folio_post (012) hands a request to fl_post_charge
--     and fl_post_charge inserts one line with no routing, no warning and no data, made
--     stricter where that was simpler (any active routing rule of the stay for the code or its
--     department, whatever its target, sends the call the usual way). If anything in it fails,
--     nothing of it stays and its calls run one by one with the others.
--   - Every other call runs its API function, unchanged, in its own subtransaction (a
--     BEGIN ... EXCEPTION block), pos.post calls ordered by outlet so that two batches take the
--     outlets' locks in one order.
--   - Each call may wait for locks only as long as the batch has time left: lock_timeout is set
--     before each call to what remains of four fifths of statement_timeout, so that one call
--     stuck behind a lock is answered busy (55P03, retryable) instead of the whole batch
--     running out of time. A call that loses a deadlock (40P01) is answered with it; the
--     daemon sends it again in a later batch.
--
-- Applied once by the migrate command inside one transaction; never edited once landed.

-- One call of a batch: the methods that may be batched, each to its API function.
CREATE FUNCTION fl_batch_call(v_method text, ctx jsonb, p jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
BEGIN
    CASE v_method
    WHEN 'folio.post' THEN
        RETURN api_folio_post(ctx, p);
    WHEN 'pos.post' THEN
        RETURN api_pos_post(ctx, p);
    ELSE
        RAISE EXCEPTION 'fl_batch: method % cannot be batched', v_method
            USING ERRCODE = 'internal_error';
    END CASE;
END
$$;

-- One plain folio.post call of a batch, as fl_batch_plain_posts reads it.
CREATE TYPE fl_batch_post AS (
    i integer,            -- position in the batch's calls, 1-based
    ctx jsonb,
    folio_id bigint,
    property_id bigint,
    code_id bigint,
    amount bigint,
    quantity integer,
    description text,
    reference text
);

-- The batch's plain folio.post calls, written; returns [{"i": position in calls (1-based),
-- "ok": answer}, ...] for the calls it wrote. Raises on any failure, writing nothing.
CREATE FUNCTION fl_batch_plain_posts(calls jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    todo fl_batch_post[];
    ids bigint[];
    v_open bigint[];
    answers jsonb;
BEGIN
    -- the plain calls and what api_folio_post (012) and fl_post_charge (012) read for them
    SELECT array_agg(ROW(e.ord, e.c -> 'ctx', f.id, f.property_id, co.id, q.amount, q.quantity,
                         coalesce(nullif(btrim(q.description), ''), co.description),
                         nullif(btrim(q.reference), ''))::fl_batch_post ORDER BY e.ord)
      INTO todo
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
       AND NOT EXISTS (SELECT 1 FROM trx_codes po WHERE po.code = q.code AND po.kind = 'paid_out')
       AND NOT EXISTS (SELECT 1 FROM trx_code_rules cr WHERE cr.code_id = co.id)
       AND (fl_ctx_property(e.c -> 'ctx') IS NULL
            OR (f.property_id = fl_ctx_property(e.c -> 'ctx')
                AND (q.stay_id IS NULL OR s.property_id = fl_ctx_property(e.c -> 'ctx'))))
       AND (f.stay_id IS NULL OR s.credit_limit IS NULL)
       AND (f.stay_id IS NULL OR f.window_no <> 1
            OR NOT EXISTS (SELECT 1 FROM routing_rules rr
                            WHERE rr.stay_id = f.stay_id AND rr.active
                              AND (rr.code_id = co.id
                                   OR (rr.code_id IS NULL AND rr.department = co.department))));
    IF todo IS NULL THEN
        RETURN '[]'::jsonb;
    END IF;

    -- the locks of fl_post_charge, property then folio (the folios in id order); a call whose
    -- folio was closed meanwhile goes the usual way
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

-- calls: [{"m": method, "ctx": context, "p": params}, ...]; v_budget: milliseconds the calls
-- may spend waiting for locks in all (the daemon sends four fifths of its statement_timeout;
-- 0: no limit). Answers, in the same order:
-- [{"ok": result} | {"error": {"sqlstate", "message", "detail", "hint"}}, ...].
CREATE FUNCTION fl_batch(calls jsonb, v_budget integer) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    n integer := jsonb_array_length(calls);
    answers jsonb[] := array_fill(NULL::jsonb, ARRAY[n]);
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
        IF v_budget > 0 THEN
            PERFORM set_config('lock_timeout', v_budget::text, true);
        END IF;
        BEGIN
            FOR a IN SELECT * FROM jsonb_array_elements(fl_batch_plain_posts(calls)) LOOP
                answers[(a ->> 'i')::integer] := jsonb_build_object('ok', a -> 'ok');
            END LOOP;
        EXCEPTION WHEN OTHERS THEN
            -- not expected: the calls run one by one below, and the log says why
            answers := array_fill(NULL::jsonb, ARRAY[n]);
            RAISE WARNING 'fl_batch: plain folio.post calls run one by one: % (%)',
                SQLERRM, SQLSTATE;
        END;
    END IF;
    FOR i IN SELECT e.ord FROM jsonb_array_elements(calls) WITH ORDINALITY AS e(c, ord)
              WHERE answers[e.ord] IS NULL
              ORDER BY e.c ->> 'm', (e.c -> 'ctx' ->> 'outlet_id')::bigint NULLS FIRST, e.ord
    LOOP
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
        END;
    END LOOP;
    RETURN to_jsonb(answers);
END
$$;
