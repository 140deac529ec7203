-- 012_lean_charge.sql - the posting engine's charge with fewer statements (docs/design.md,
-- "Posting speed"). Same rules, same answers, same errors; what changes is how many statements
-- one charge runs, since each pays the executor's start-up whatever little it reads.
--
--   - fl_post_charge (004): the folio and its code are read in one query; the code's lines are
--     split only when it has tax or service rules (a code without rules is one line, inserted
--     straight away); the business date comes with the property lock instead of a sub-select
--     per line; the credit limit of the folio's own stay is read once and the balance summed
--     only under a limit; the answer is built from the rows in hand and one read of the target
--     folio after the insert.
--   - folio.post (011): the plain request is checked against the folio and the code in one
--     query and then goes to fl_post_charge, which takes the locks (the property FOR SHARE,
--     the folio by the balance update of postings_insert). 011 locked the folio beforehand so
--     that a folio closed in the meantime went to the general way; now a folio that is closed
--     by a concurrent checkout between the read and the insert is refused by postings_insert
--     with folio_closed, which is also what the general way answers a cashier (a manager who
--     meant a late charge sends it again and the general way reopens the window).
--
-- Applied once by the migrate command inside one transaction; never edited once landed.

-- ---------------------------------------------------------------------------------------------
-- The engine's charge
-- ---------------------------------------------------------------------------------------------

-- As in 004: posts a charge with the lines its code's rules generate, routing applied when
-- asked, and answers {"posting", "postings", "total", "folio", "routed",
-- "routed_from_folio_id", "warnings", "data"}. The checks and their errors are those of 004 in
-- the same order, except that the code is looked up (not_found) together with the folio.
CREATE OR REPLACE FUNCTION fl_post_charge(ctx jsonb, v_folio_id bigint, v_code_id bigint,
                                          v_amount bigint, v_quantity integer DEFAULT 1,
                                          v_description text DEFAULT NULL,
                                          v_reference text DEFAULT NULL,
                                          v_source text DEFAULT NULL,
                                          v_apply_routing boolean DEFAULT true)
RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    x record;
    f folios;
    c trx_codes;
    v_has_rules boolean;
    v_date date;
    rt record;
    target bigint := v_folio_id;
    routed boolean := false;
    tmpl postings;
    main postings;
    lines postings[];
    tf folios;
    j jsonb;
    total bigint := 0;
    l postings;
    warnings text[] := '{}';
    data jsonb := '{}';
    over jsonb;
    v_limit bigint;
    v_balance bigint;
    gross bigint;
BEGIN
    SELECT fo AS f, co AS c,
           EXISTS (SELECT 1 FROM trx_code_rules cr WHERE cr.code_id = co.id) AS has_rules,
           st.credit_limit
      INTO x
      FROM folios fo
      LEFT JOIN trx_codes co ON co.id = v_code_id AND co.property_id = fo.property_id
      LEFT JOIN stays st ON st.id = fo.stay_id
     WHERE fo.id = v_folio_id;
    f := x.f;
    c := x.c;
    v_has_rules := x.has_rules;
    v_limit := x.credit_limit;
    IF f.id IS NULL THEN
        PERFORM fl_fail('not_found', format('folio %s does not exist', v_folio_id));
    END IF;
    PERFORM fl_scope_check(ctx, f.property_id, format('folio %s', v_folio_id));
    v_quantity := coalesce(v_quantity, 1);
    IF v_quantity < 1 OR v_quantity > 9999 THEN
        PERFORM fl_fail('invalid_params', 'quantity must be between 1 and 9999');
    END IF;
    IF v_amount IS NULL OR abs(v_amount) > 1000000000000 THEN
        PERFORM fl_fail('invalid_params', 'amount must be between -10^12 and 10^12');
    END IF;
    IF length(v_description) > 200 OR length(v_reference) > 64 THEN
        PERFORM fl_fail('invalid_params', 'description is at most 200 characters, reference 64');
    END IF;
    gross := v_amount * v_quantity;
    IF abs(gross) > 1000000000000 THEN
        PERFORM fl_fail('invalid_params',
                        format('amount x quantity (%s) must be between -10^12 and 10^12', gross));
    END IF;
    IF c.id IS NULL THEN
        PERFORM fl_fail('not_found', format('transaction code %s does not exist in the folio''s '
                                            'property', v_code_id));
    END IF;
    IF c.kind NOT IN ('charge', 'tax') OR NOT c.enabled THEN
        PERFORM fl_fail('invalid_code', format('%s is %s %s code; charges are posted on enabled '
                                               'charge codes', c.code,
                                               CASE WHEN c.enabled THEN 'a' ELSE 'a disabled' END,
                                               c.kind));
    END IF;
    -- the property row FOR SHARE before anything is written: the date cannot close under us
    SELECT business_date INTO v_date FROM properties WHERE id = f.property_id FOR SHARE;
    IF v_apply_routing AND f.stay_id IS NOT NULL THEN
        rt := fl_route_target(f, c);
        target := rt.folio_id;
        routed := rt.routed;
        IF rt.target_closed IS NOT NULL THEN
            warnings := warnings || 'routing_target_closed'::text;
            data := data || jsonb_build_object('routing_target_folio_id', rt.target_closed);
        END IF;
    END IF;
    -- a closed folio takes nothing, not even a charge that routing would send elsewhere. A
    -- charge that stays on its folio locks it now (the lock postings_insert takes, in the
    -- order property then folio), which also gives the balance the answer shows; a routed
    -- one reads it again without a lock, as 004 did: a lock here would be taken before the
    -- target's, against the order of a group checkout.
    IF routed THEN
        SELECT * INTO f FROM folios WHERE id = f.id;
    ELSE
        SELECT * INTO f FROM folios WHERE id = f.id FOR NO KEY UPDATE;
    END IF;
    IF f.status <> 'open' THEN
        PERFORM fl_fail('folio_closed', format('folio %s is closed', f.number));
    END IF;

    tmpl.property_id := f.property_id;
    tmpl.folio_id := target;
    tmpl.business_date := v_date;
    tmpl.description := coalesce(nullif(btrim(v_description), ''), c.description);
    tmpl.reference := nullif(btrim(v_reference), '');
    tmpl.source := coalesce(v_source, fl_ctx_source(ctx));
    tmpl.routed_from_folio_id := CASE WHEN routed THEN f.id END;
    IF v_has_rules THEN
        lines := fl_post_lines(ctx, tmpl, c, gross, v_quantity, v_amount, 'charge');
    ELSE
        -- fl_post_lines for a code without rules: the main line alone
        INSERT INTO postings (property_id, folio_id, business_date, trx_code_id, type, amount,
                              quantity, unit_amount, description, reference, source, operator,
                              user_id, outlet_id, routed_from_folio_id)
        VALUES (tmpl.property_id, target, v_date, c.id,
                CASE WHEN c.kind = 'tax' THEN 'tax' ELSE 'charge' END, gross, v_quantity,
                v_amount, tmpl.description, tmpl.reference, tmpl.source, fl_actor(ctx),
                (ctx ->> 'user_id')::bigint, (ctx ->> 'outlet_id')::bigint,
                tmpl.routed_from_folio_id)
        RETURNING * INTO main;
        lines := ARRAY[main];
    END IF;
    FOREACH l IN ARRAY lines LOOP
        total := total + l.amount;
    END LOOP;

    -- deposit_required: as fl_credit_over (a stay's windows together, or a master), with the
    -- limit of the folio's own stay read with the folio; other folios have no limit
    IF routed OR f.type = 'master' THEN
        over := fl_credit_over(target);
    ELSIF f.stay_id IS NOT NULL AND v_limit IS NOT NULL THEN
        SELECT sum(w.balance) INTO v_balance FROM folios w WHERE w.stay_id = f.stay_id;
        IF v_limit - v_balance < 0 THEN
            over := jsonb_build_object('credit_limit', v_limit, 'balance', v_balance,
                                       'available', v_limit - v_balance,
                                       'stay_id', f.stay_id, 'group_id', NULL);
        END IF;
    END IF;
    IF over IS NOT NULL THEN
        warnings := warnings || 'deposit_required'::text;
        data := data || over;
    END IF;
    PERFORM fl_log(ctx, f.property_id, 'folio', target, 'post', jsonb_build_object(
        'posting_id', lines[1].id, 'code', c.code, 'amount', gross, 'quantity', v_quantity,
        'total', total, 'source', tmpl.source,
        'routed_from_folio_id', tmpl.routed_from_folio_id));

    -- the answer of fl_post_result, from the rows in hand
    j := CASE WHEN v_has_rules THEN fl_postings_json(lines)
              ELSE jsonb_build_array(fl_posting_json(main, c)) END;
    IF routed THEN
        SELECT * INTO tf FROM folios WHERE id = target;
    ELSE
        tf := f;
        tf.balance := f.balance + total;
    END IF;
    RETURN jsonb_build_object(
        'posting', j -> 0, 'postings', j, 'total', total, 'folio', fl_folio_brief(tf),
        'routed', routed, 'routed_from_folio_id', tmpl.routed_from_folio_id,
        'warnings', to_jsonb(warnings), 'data', data);
END
$$;

-- ---------------------------------------------------------------------------------------------
-- folio.post
-- ---------------------------------------------------------------------------------------------

-- The members of a plain folio.post as 011 checks them (no query): ok is false when the
-- request is not plain or would be refused, and the general way then answers it.
CREATE FUNCTION fl_folio_post_plain(p jsonb, OUT ok boolean, OUT folio_id bigint,
                                    OUT stay_id bigint, OUT window_no integer, OUT code text,
                                    OUT amount bigint, OUT quantity integer,
                                    OUT description text, OUT reference text)
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    n numeric;
    d record;
    r record;
BEGIN
    ok := false;
    IF jsonb_typeof(p) IS DISTINCT FROM 'object'
       OR p - ARRAY['folio_id', 'stay_id', 'window', 'code', 'amount', 'quantity', 'description',
                    'reference'] <> '{}'::jsonb
       OR jsonb_typeof(p -> 'code') IS DISTINCT FROM 'string'
       OR jsonb_typeof(p -> 'amount') IS DISTINCT FROM 'number' THEN
        RETURN;
    END IF;
    code := p ->> 'code';
    n := (p -> 'amount')::numeric;
    IF code !~ '^[A-Z0-9][A-Z0-9_-]{0,15}$' OR code = 'PAIDOUT'
       OR scale(n) > 0 OR n < 1 OR n > 1000000000000 THEN
        RETURN;
    END IF;
    amount := n;
    quantity := 1;
    IF p ? 'quantity' THEN
        n := CASE WHEN jsonb_typeof(p -> 'quantity') = 'number' THEN (p -> 'quantity')::numeric END;
        IF n IS NULL OR scale(n) > 0 OR n < 1 OR n > 999 THEN
            RETURN;
        END IF;
        quantity := n;
    END IF;
    IF amount * quantity > 1000000000000 THEN
        RETURN;
    END IF;
    d := fl_p_text_try(p, 'description', 200);
    r := fl_p_text_try(p, 'reference', 64);
    IF NOT d.valid OR NOT r.valid THEN
        RETURN;
    END IF;
    description := d.val;
    reference := r.val;
    IF p ? 'folio_id' THEN
        n := CASE WHEN jsonb_typeof(p -> 'folio_id') = 'number' THEN (p -> 'folio_id')::numeric END;
        IF p ? 'stay_id' OR p ? 'window' OR n IS NULL OR scale(n) > 0 OR n < 1
           OR n > 9007199254740991 THEN
            RETURN;
        END IF;
        folio_id := n;
    ELSE
        n := CASE WHEN jsonb_typeof(p -> 'stay_id') = 'number' THEN (p -> 'stay_id')::numeric END;
        IF n IS NULL OR scale(n) > 0 OR n < 1 OR n > 9007199254740991 THEN
            RETURN;
        END IF;
        stay_id := n;
        window_no := 1;
        IF p ? 'window' THEN
            n := CASE WHEN jsonb_typeof(p -> 'window') = 'number'
                      THEN (p -> 'window')::numeric END;
            IF n IS NULL OR scale(n) > 0 OR n < 1 OR n > 8 THEN
                RETURN;
            END IF;
            window_no := n;
        END IF;
    END IF;
    ok := true;
END
$$;

-- folio.post: a plain request whose folio (of the caller's property, found by folio_id or by
-- stay and window) is open and whose code is an enabled charge code of that property, and is
-- no paid-out code anywhere (008), goes straight to the engine; anything else to the general
-- way of 005/008, before anything is written.
CREATE OR REPLACE FUNCTION api_folio_post(ctx jsonb, p jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    q record := fl_folio_post_plain(p);
    v_scope bigint := fl_ctx_property(ctx);
    x record;
BEGIN
    IF NOT q.ok THEN
        RETURN fl_folio_post_general(ctx, p);
    END IF;
    SELECT f.id, f.property_id, f.status, s.property_id AS stay_property, c.id AS code_id,
           c.kind, c.enabled,
           EXISTS (SELECT 1 FROM trx_codes po WHERE po.code = q.code AND po.kind = 'paid_out')
               AS paid_out
      INTO x
      FROM folios f
      LEFT JOIN stays s ON s.id = f.stay_id
      LEFT JOIN trx_codes c ON c.property_id = f.property_id AND c.code = q.code
     WHERE f.id = coalesce(q.folio_id, (SELECT w.id FROM folios w
                                         WHERE w.stay_id = q.stay_id
                                           AND w.window_no = q.window_no));
    IF x.id IS NULL OR x.status <> 'open' OR x.code_id IS NULL OR x.kind <> 'charge'
       OR NOT x.enabled OR x.paid_out
       OR (v_scope IS NOT NULL AND (x.property_id IS DISTINCT FROM v_scope
                                    OR (q.stay_id IS NOT NULL
                                        AND x.stay_property IS DISTINCT FROM v_scope))) THEN
        RETURN fl_folio_post_general(ctx, p);
    END IF;
    RETURN fl_post_charge(ctx, x.id, x.code_id, q.amount, q.quantity, q.description,
                          q.reference, NULL, true);
END
$$;
