-- 011_posting_speed.sql - the same postings for less database work (docs/design.md, "Posting
-- speed"). Nothing here changes a rule, an answer or an error; only how much SQL runs for them.
--
--   - SQL functions that PostgreSQL cannot inline (a FROM clause or a sub-select in their body)
--     were parsed and planned again in every transaction that called them: fl_money,
--     fl_audit_running, fl_audit_blocks_pos, fl_pos_credit_available, fl_pos_answer become
--     plpgsql (cached plans), with the same results, NULLs included.
--   - The three row and statement triggers of an INSERT on postings (postings_guard of 009,
--     postings_shift of 008, the statement-level postings_balance of 009 with its transition
--     table) become one BEFORE INSERT row trigger, postings_insert, that makes the same checks
--     in the same order and moves the folio balance with the UPDATE that also locks the folio
--     (see fl_postings_insert below for why that is the same rule).
--   - fl_credit_over asks for the balance only when there is a limit; fl_code_split answers a
--     code without tax or service rules with one query.
--   - folio.post has a direct way for the plain request (api_folio_post below); every other
--     request, and every request that will fail, takes the unchanged method of 005/008.
--
-- Applied once by the migrate command inside one transaction; never edited once landed.

-- ---------------------------------------------------------------------------------------------
-- Non-inlinable SQL functions as plpgsql (same bodies, same results)
-- ---------------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION fl_money(v_amount bigint, v_minor_units integer) RETURNS text
LANGUAGE plpgsql IMMUTABLE STRICT AS $$
DECLARE
    d bigint := (ARRAY[1, 10, 100, 1000, 10000]::bigint[])[v_minor_units + 1];
BEGIN
    RETURN CASE WHEN v_amount < 0 THEN '-' ELSE '' END
           || (abs(v_amount) / d)::text
           || CASE WHEN v_minor_units = 0 THEN ''
                   ELSE '.' || lpad((abs(v_amount) % d)::text, v_minor_units, '0') END;
END
$$;

CREATE OR REPLACE FUNCTION fl_audit_running(v_property_id bigint) RETURNS boolean
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN EXISTS (SELECT 1 FROM audit_runs
                    WHERE property_id = v_property_id AND status = 'running');
END
$$;

-- NULL for an outlet that does not exist, as the SQL function's empty result was.
CREATE OR REPLACE FUNCTION fl_audit_blocks_pos(v_outlet_id bigint) RETURNS boolean
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_blocks boolean;
BEGIN
    SELECT fl_audit_running(o.property_id)
           AND (coalesce(o.policy -> 'block_during_audit' = 'true'::jsonb, false)
                OR coalesce(pr.settings -> 'audit_block_postings' = 'true'::jsonb, false))
      INTO v_blocks
      FROM outlets o JOIN properties pr ON pr.id = o.property_id
     WHERE o.id = v_outlet_id;
    RETURN v_blocks;
END
$$;

CREATE OR REPLACE FUNCTION fl_pos_credit_available(s stays) RETURNS bigint
LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF s.credit_limit IS NULL THEN
        RETURN NULL;
    END IF;
    RETURN s.credit_limit - (SELECT coalesce(sum(f.balance), 0) FROM folios f
                              WHERE f.stay_id = s.id);
END
$$;

-- (not inlined either: coalesce over a parameter of a non-strict function)
CREATE OR REPLACE FUNCTION fl_pos_answer(v_status text, v_reason text, v_message text,
                                         v_extra jsonb DEFAULT '{}') RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    RETURN jsonb_build_object('status', v_status, 'reason', v_reason, 'message', v_message)
           || coalesce(v_extra, '{}'::jsonb);
END
$$;

-- ---------------------------------------------------------------------------------------------
-- One trigger for an INSERT on postings
-- ---------------------------------------------------------------------------------------------

-- The checks of postings_guard (009) and then of postings_shift (008), in their order and with
-- their errors, and the balance move of postings_balance (009), in one BEFORE INSERT trigger:
--   1. the business date: the property row FOR SHARE (the close and the audit's roll take it
--      FOR UPDATE, so no posting lands on a date being closed), the open date or the running
--      audit's date for its own postings, never a closed date;
--   2. the folio: open, of the posting's property; locked by the UPDATE that adds the amount to
--      its balance (FOR NO KEY UPDATE, the lock the guard took: it serialises the balances and
--      a concurrent folio.close, and a close that commits first is seen: status = 'open' is
--      checked again on the row the UPDATE waited for). A zero amount locks without updating;
--   3. a generated line sits on its charge's folio;
--   4. city-ledger folios take postings only inside the city-ledger functions; a money line
--      entered by a user gets the user's open shift, locked FOR SHARE.
-- Moving the balance here rather than after the insert keeps the rule "folios.balance is the
-- sum of the folio's postings, in the same transaction": the UPDATE and the INSERT are one
-- statement, and when the row then fails (a constraint, a foreign key, a unique index) the
-- statement fails and the balance change goes with it; no other BEFORE INSERT trigger on
-- postings can skip the row. The folio guard allows the change: it runs at trigger depth 2.
-- The night audit's multi-row inserts now update a folio once per line instead of once per
-- statement; a single-row insert (every front-desk, POS and engine posting) saves the
-- transition table and a statement-level trigger.
CREATE FUNCTION fl_postings_insert() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    open_date date;
    v_closed boolean;
    f_type text;
    parent_folio bigint;
    v_kind text;
    v_money boolean;
    sh cashier_shifts;
BEGIN
    SELECT business_date INTO open_date FROM properties WHERE id = NEW.property_id FOR SHARE;
    -- 009's condition, (not the open date OR a closed date) AND NOT (the audit's own posting),
    -- in steps: as one expression PostgreSQL planned it again at every row
    v_closed := NEW.business_date IS DISTINCT FROM open_date;
    IF NOT v_closed THEN
        v_closed := EXISTS (SELECT 1 FROM business_dates b
                             WHERE b.property_id = NEW.property_id
                               AND b.business_date = NEW.business_date);
    END IF;
    IF v_closed AND NEW.source = 'night_audit' THEN
        v_closed := NOT EXISTS (SELECT 1 FROM audit_runs r
                                 WHERE r.property_id = NEW.property_id AND r.status = 'running'
                                   AND r.step = 'post' AND r.business_date = NEW.business_date);
    END IF;
    IF v_closed THEN
        PERFORM fl_fail('business_date_closed',
                        format('postings are dated with the open business date %s, not %s',
                               open_date, NEW.business_date));
    END IF;
    IF NEW.amount <> 0 THEN
        UPDATE folios SET balance = balance + NEW.amount
         WHERE id = NEW.folio_id AND property_id = NEW.property_id AND status = 'open'
        RETURNING type INTO f_type;
    ELSE
        SELECT type INTO f_type FROM folios
         WHERE id = NEW.folio_id AND property_id = NEW.property_id AND status = 'open'
           FOR NO KEY UPDATE;
    END IF;
    IF NOT FOUND THEN
        PERFORM fl_fail('folio_closed', format('folio %s is closed', NEW.folio_id));
    END IF;
    IF NEW.parent_id IS NOT NULL THEN
        SELECT folio_id INTO parent_folio FROM postings WHERE id = NEW.parent_id;
        IF parent_folio IS DISTINCT FROM NEW.folio_id THEN
            PERFORM fl_fail('invalid_params', 'a generated line sits on its charge''s folio');
        END IF;
    END IF;

    IF f_type = 'city_ledger' AND NOT fl_ar_posting_allowed() THEN
        PERFORM fl_fail('use_ar',
                        format('folio %s is a city-ledger account: it takes invoices through '
                               'ar.transfer and payments through ar.pay only', NEW.folio_id));
    END IF;
    -- fl_is_money_line needs the code's kind only for charges and voids
    IF NEW.type IN ('charge', 'void') THEN
        SELECT kind INTO v_kind FROM trx_codes WHERE id = NEW.trx_code_id;
    END IF;
    v_money := fl_is_money_line(NEW.type, v_kind);
    IF v_money IS NOT TRUE THEN
        IF NEW.shift_id IS NOT NULL THEN
            PERFORM fl_fail('invalid_params', 'only payments, refunds, paid-outs and their voids '
                            'belong to a cashier shift');
        END IF;
        RETURN NEW;
    END IF;
    IF NEW.user_id IS NULL THEN
        RETURN NEW;
    END IF;
    IF NEW.shift_id IS NULL THEN
        SELECT * INTO sh FROM cashier_shifts
         WHERE user_id = NEW.user_id AND property_id = NEW.property_id AND status = 'open'
           FOR SHARE;
    ELSE
        SELECT * INTO sh FROM cashier_shifts WHERE id = NEW.shift_id FOR SHARE;
    END IF;
    IF sh.id IS NULL OR sh.status <> 'open' OR sh.user_id <> NEW.user_id
       OR sh.property_id <> NEW.property_id THEN
        PERFORM fl_fail('no_open_shift',
                        format('%s has no open cashier shift in property %s: open one with '
                               'cashier.open before taking payments, refunds or paid-outs',
                               NEW.operator, fl_property_code(NEW.property_id)));
    END IF;
    NEW.shift_id := sh.id;
    RETURN NEW;
END
$$;

DROP TRIGGER postings_guard ON postings;
DROP TRIGGER postings_shift ON postings;
DROP TRIGGER postings_balance ON postings;
CREATE TRIGGER postings_insert BEFORE INSERT ON postings
    FOR EACH ROW EXECUTE FUNCTION fl_postings_insert();

-- ---------------------------------------------------------------------------------------------
-- The engine's helpers, with fewer queries
-- ---------------------------------------------------------------------------------------------

-- As in 004: fl_credit_position when the balance exceeds the limit, else NULL. Without a limit
-- "available" is NULL and the answer is NULL, so the balance is summed only under a limit.
CREATE OR REPLACE FUNCTION fl_credit_over(v_folio_id bigint) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
    f folios;
    v_limit bigint;
    c jsonb;
BEGIN
    SELECT * INTO f FROM folios WHERE id = v_folio_id;
    IF f.stay_id IS NOT NULL THEN
        SELECT credit_limit INTO v_limit FROM stays WHERE id = f.stay_id;
    ELSIF f.type = 'master' THEN
        SELECT credit_limit INTO v_limit FROM groups WHERE id = f.group_id;
    END IF;
    IF v_limit IS NULL THEN
        RETURN NULL;
    END IF;
    c := fl_credit_position(v_folio_id);
    RETURN CASE WHEN (c ->> 'available')::bigint < 0 THEN c END;
END
$$;

-- As in 001, with one query for a code that generates no lines (most codes).
ALTER FUNCTION fl_code_split(bigint, bigint) RENAME TO fl_code_split_rules;

CREATE FUNCTION fl_code_split(v_code_id bigint, v_amount bigint)
RETURNS TABLE (seq integer, trx_code_id bigint, code text, kind text, amount bigint)
LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM trx_code_rules cr WHERE cr.code_id = v_code_id) THEN
        RETURN QUERY SELECT * FROM fl_code_split_rules(v_code_id, v_amount);
        RETURN;
    END IF;
    RETURN QUERY SELECT 0, c.id, c.code, c.kind, v_amount FROM trx_codes c WHERE c.id = v_code_id;
END
$$;

-- ---------------------------------------------------------------------------------------------
-- folio.post
-- ---------------------------------------------------------------------------------------------

-- A paid-out code's name, for the test api_folio_post (008) makes on every call.
CREATE INDEX trx_codes_paid_out_code ON trx_codes (code) WHERE kind = 'paid_out';

-- A text member as fl_p_text(p, k, '', false, max_len) returns it when it would accept it;
-- valid is false when fl_p_text would refuse it (the caller then takes the general way, which
-- says why in its usual order).
CREATE FUNCTION fl_p_text_try(p jsonb, k text, max_len integer, OUT val text, OUT valid boolean)
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    valid := true;
    IF p -> k IS NULL OR jsonb_typeof(p -> k) = 'null' THEN
        RETURN;
    END IF;
    IF jsonb_typeof(p -> k) <> 'string' THEN
        valid := false;
        RETURN;
    END IF;
    val := nullif(btrim(p ->> k, E' \t\r\n'), '');
    valid := val IS NULL OR (length(val) <= max_len AND val !~ '[[:cntrl:]]');
END
$$;

-- The method of 008 stays as it is under another name: it answers every request this function
-- does not post itself, errors included.
ALTER FUNCTION api_folio_post(jsonb, jsonb) RENAME TO fl_folio_post_general;

-- folio.post. The plain request (a charge code of the folio's property, a positive integer
-- amount, folio_id or stay_id with an optional window, valid optional members) is checked
-- here with plain expressions and a few index lookups instead of the chain of helpers; when
-- every check the general way makes would pass, it takes the same locks (the property FOR
-- SHARE, then the folio FOR NO KEY UPDATE) and calls the same engine, fl_post_charge, with the
-- same arguments. Anything else, and a folio found closed under the lock (a late charge, or
-- folio_closed), goes to fl_folio_post_general before anything is written, so that every
-- error and every other answer is the one it always was.
CREATE FUNCTION api_folio_post(ctx jsonb, p jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    n numeric;
    v_folio bigint;
    v_stay bigint;
    v_window integer := 1;
    v_code text;
    v_amount bigint;
    v_quantity integer := 1;
    v_scope bigint := fl_ctx_property(ctx);
    v_prop bigint;
    d record;
    r record;
    f folios;
    c trx_codes;
BEGIN
    IF jsonb_typeof(p) IS DISTINCT FROM 'object'
       OR p - ARRAY['folio_id', 'stay_id', 'window', 'code', 'amount', 'quantity', 'description',
                    'reference'] <> '{}'::jsonb
       OR jsonb_typeof(p -> 'code') IS DISTINCT FROM 'string'
       OR jsonb_typeof(p -> 'amount') IS DISTINCT FROM 'number' THEN
        RETURN fl_folio_post_general(ctx, p);
    END IF;
    v_code := p ->> 'code';
    n := (p -> 'amount')::numeric;
    IF v_code !~ '^[A-Z0-9][A-Z0-9_-]{0,15}$' OR v_code = 'PAIDOUT'
       OR scale(n) > 0 OR n < 1 OR n > 1000000000000 THEN
        RETURN fl_folio_post_general(ctx, p);
    END IF;
    v_amount := n;
    IF p ? 'quantity' THEN
        n := CASE WHEN jsonb_typeof(p -> 'quantity') = 'number' THEN (p -> 'quantity')::numeric END;
        IF n IS NULL OR scale(n) > 0 OR n < 1 OR n > 999 THEN
            RETURN fl_folio_post_general(ctx, p);
        END IF;
        v_quantity := n;
    END IF;
    IF v_amount * v_quantity > 1000000000000 THEN
        RETURN fl_folio_post_general(ctx, p);
    END IF;
    d := fl_p_text_try(p, 'description', 200);
    r := fl_p_text_try(p, 'reference', 64);
    IF NOT d.valid OR NOT r.valid THEN
        RETURN fl_folio_post_general(ctx, p);
    END IF;
    -- the target: folio_id alone, or stay_id with an optional window
    IF p ? 'folio_id' THEN
        n := CASE WHEN jsonb_typeof(p -> 'folio_id') = 'number' THEN (p -> 'folio_id')::numeric END;
        IF p ? 'stay_id' OR p ? 'window' OR n IS NULL OR scale(n) > 0 OR n < 1
           OR n > 9007199254740991 THEN
            RETURN fl_folio_post_general(ctx, p);
        END IF;
        v_folio := n;
        SELECT * INTO f FROM folios WHERE id = v_folio;
    ELSE
        n := CASE WHEN jsonb_typeof(p -> 'stay_id') = 'number' THEN (p -> 'stay_id')::numeric END;
        IF n IS NULL OR scale(n) > 0 OR n < 1 OR n > 9007199254740991 THEN
            RETURN fl_folio_post_general(ctx, p);
        END IF;
        v_stay := n;
        IF p ? 'window' THEN
            n := CASE WHEN jsonb_typeof(p -> 'window') = 'number'
                      THEN (p -> 'window')::numeric END;
            IF n IS NULL OR scale(n) > 0 OR n < 1 OR n > 8 THEN
                RETURN fl_folio_post_general(ctx, p);
            END IF;
            v_window := n;
        END IF;
        SELECT property_id INTO v_prop FROM stays WHERE id = v_stay;
        IF NOT FOUND OR (v_scope IS NOT NULL AND v_prop IS DISTINCT FROM v_scope) THEN
            RETURN fl_folio_post_general(ctx, p);
        END IF;
        SELECT * INTO f FROM folios WHERE stay_id = v_stay AND window_no = v_window;
    END IF;
    IF f.id IS NULL OR (v_scope IS NOT NULL AND f.property_id IS DISTINCT FROM v_scope)
       OR EXISTS (SELECT 1 FROM trx_codes x WHERE x.code = v_code AND x.kind = 'paid_out') THEN
        RETURN fl_folio_post_general(ctx, p);
    END IF;
    SELECT * INTO c FROM trx_codes WHERE property_id = f.property_id AND code = v_code;
    IF NOT FOUND OR c.kind <> 'charge' OR NOT c.enabled THEN
        RETURN fl_folio_post_general(ctx, p);
    END IF;
    -- the locks of fl_folio_for_posting (lock order of 004: the property, then the folio)
    PERFORM 1 FROM properties WHERE id = f.property_id FOR SHARE;
    SELECT * INTO f FROM folios WHERE id = f.id FOR NO KEY UPDATE;
    IF f.status <> 'open' THEN
        RETURN fl_folio_post_general(ctx, p);
    END IF;
    RETURN fl_post_charge(ctx, f.id, c.id, v_amount, v_quantity, d.val, r.val, NULL, true);
END
$$;
