-- 013_lean_pos.sql - pos.post with less database work (docs/design.md, "Posting speed"). Same
-- checks in the same order, same answers and statuses, same stored requests; what changes:
--
--   - the request is stored once, with its answer, instead of inserted as a claim and updated
--     with the answer. The claim made a concurrent request with the same key wait on the
--     unique index; now the outlet's row, which pos.post has always locked to run an outlet's
--     postings one at a time, is locked first and the key looked up under that lock, so the
--     second request still waits for the first to commit and then replays its answer;
--   - the codes of the check are read once, not once per step;
--   - the credit position is read only for an account that has a limit;
--   - the lines of the answer are gathered with plain expressions instead of a query per
--     code.
--
-- Applied once by the migrate command inside one transaction; never edited once landed.

-- Stores a request with its answer (status, reason, business date, stay, total and postings
-- as 007's fl_pos_store set them) and returns the answer.
CREATE FUNCTION fl_pos_record(o outlets, v_key text, v_hash text, p jsonb, v_answer jsonb,
                              v_business_date date, v_stay_id bigint DEFAULT NULL,
                              v_total bigint DEFAULT 0, v_posting_ids bigint[] DEFAULT '{}')
RETURNS jsonb
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO pos_requests (property_id, outlet_id, key, body_hash, params, status, reason,
                              answer, business_date, stay_id, total, posting_ids, answered_at)
    VALUES (o.property_id, o.id, v_key, v_hash, p, v_answer ->> 'status',
            v_answer ->> 'reason', v_answer, v_business_date, v_stay_id, coalesce(v_total, 0),
            coalesce(v_posting_ids, '{}'), now());
    RETURN v_answer;
END
$$;

-- pos.post as 007 wrote it (010's api_pos_post calls it after its night-audit check), with the
-- changes above.
CREATE OR REPLACE FUNCTION fl_pos_post_unguarded(ctx jsonb, p jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    o outlets := fl_pos_outlet(ctx);
    pol jsonb;
    prop properties;
    r pos_requests;
    s stays;
    g guests;
    w1 folios;
    c trx_codes;
    codes trx_codes[] := '{}';
    k integer;
    l jsonb;
    sp record;
    rt record;
    item jsonb;
    path text;
    i integer;
    v_detail text;
    v_hash text;
    v_key text;
    v_room text;
    v_stay bigint;
    v_name text;
    v_check text;
    v_desc text;
    v_tax bigint;
    v_service bigint;
    v_tip bigint;
    v_total bigint;
    v_hours integer;
    v_limit bigint;
    v_used bigint;
    v_late boolean := false;
    reopen_w1 boolean := false;
    -- one entry per line group to post: {"code", "amount", "tip" (the tip's), then "code_id"
    -- and "total" (the amount with its generated lines)}
    parts jsonb := '[]';
    grp jsonb;
    allowed text[];
    sum_lines bigint := 0;
    sum_charges bigint := 0;
    sum_tax bigint := 0;
    sum_service bigint := 0;
    sum_group bigint;
    expected jsonb;
    mu integer;
    found_stay record;
    credit jsonb := '{}';
    acct text;
    cpos jsonb;
    over_by bigint := 0;
    warnings text[] := '{}';
    res jsonb;
    lines jsonb := '[]';
    ids bigint[] := '{}';
    routed boolean := false;
    answer jsonb;
BEGIN
    IF NOT o.enabled THEN
        RETURN fl_pos_disabled(o);
    END IF;

    -- 1. the message itself: a malformed one is answered UR invalid_request and not stored
    BEGIN
        p := fl_params(p);
        PERFORM fl_check_keys(p, ARRAY['key', 'room', 'stay_id', 'guest_name', 'check',
                                       'covers', 'table', 'subtotals', 'tax', 'service', 'tip',
                                       'total', 'items', 'description'], '');
        v_key := fl_p_text(p, 'key', '', true, 64);
        v_room := fl_p_room_number(p, 'room', '', true);
        v_stay := fl_p_id(p, 'stay_id', '', false);
        v_name := fl_p_text(p, 'guest_name', '', false, 64);
        v_check := fl_p_text(p, 'check', '', true, 32);
        PERFORM fl_p_int(p, 'covers', '', false, 0, 999);
        PERFORM fl_p_text(p, 'table', '', false, 16);
        v_desc := fl_p_text(p, 'description', '', false, 200);
        v_tax := fl_p_amount(p, 'tax', '', false, 0);
        v_service := fl_p_amount(p, 'service', '', false, 0);
        v_tip := coalesce(fl_p_amount(p, 'tip', '', false, 0), 0);
        v_total := fl_p_amount(p, 'total', '', true, 0);
        IF jsonb_array_length(fl_p_array(p, 'subtotals', '', true)) NOT BETWEEN 1 AND 9 THEN
            PERFORM fl_fail('invalid_params', 'subtotals must have 1 to 9 elements');
        END IF;
        i := 0;
        FOR item IN SELECT value FROM jsonb_array_elements(p -> 'subtotals') LOOP
            path := format('subtotals[%s].', i);
            i := i + 1;
            item := fl_params(item, path);
            PERFORM fl_check_keys(item, ARRAY['code', 'amount'], path);
            parts := parts || jsonb_build_object(
                'code', fl_p_code(item, 'code', path, true),
                'amount', fl_p_amount(item, 'amount', path, true, 1));
        END LOOP;
        IF jsonb_array_length(coalesce(fl_p_array(p, 'items', '', false), '[]')) > 200 THEN
            PERFORM fl_fail('invalid_params', 'items must have at most 200 elements');
        END IF;
        i := 0;
        FOR item IN SELECT value FROM jsonb_array_elements(coalesce(p -> 'items', '[]')) LOOP
            path := format('items[%s].', i);
            i := i + 1;
            item := fl_params(item, path);
            PERFORM fl_check_keys(item, ARRAY['code', 'name', 'quantity', 'amount'], path);
            PERFORM fl_p_code(item, 'code', path, false);
            PERFORM fl_p_text(item, 'name', path, true, 100);
            PERFORM fl_p_int(item, 'quantity', path, false, 1, 999);
            PERFORM fl_p_amount(item, 'amount', path, true);
        END LOOP;
    EXCEPTION WHEN SQLSTATE 'FL000' THEN
        GET STACKED DIAGNOSTICS v_detail = PG_EXCEPTION_DETAIL;
        RETURN fl_pos_invalid(v_detail);
    END;

    -- 2. the key. This outlet's requests run one at a time (its row FOR NO KEY UPDATE, which
    -- also serialises max_per_day), so a concurrent request with the same key waits here until
    -- the first one commits and then finds its answer. The request is stored once, with its
    -- answer (fl_pos_record); the unique (outlet_id, key) stays the last word. Then the
    -- property (the business date cannot close under us), then the stay: the lock order of 004.
    v_hash := encode(sha256(convert_to(p::text, 'UTF8')), 'hex');
    SELECT * INTO o FROM outlets WHERE id = o.id FOR NO KEY UPDATE;
    SELECT * INTO r FROM pos_requests WHERE outlet_id = o.id AND key = v_key;
    IF FOUND THEN
        IF r.body_hash <> v_hash THEN
            RETURN fl_pos_answer('UR', 'idempotency_key_reused',
                                 format('key %s was used for another request on %s: use a new '
                                        'key for a new posting', v_key,
                                        to_char(r.created_at, 'YYYY-MM-DD HH24:MI:SS TZ')),
                                 jsonb_build_object('key', v_key));
        END IF;
        RETURN r.answer || jsonb_build_object('replayed', true);
    END IF;
    pol := fl_pos_policy(o);
    v_hours := (pol ->> 'late_charge_hours')::integer;
    SELECT * INTO prop FROM properties WHERE id = o.property_id FOR SHARE;
    mu := prop.minor_units;
    -- (NA night_audit for block_during_audit belongs to the night audit: see docs/pos.md)

    -- 3. the codes the outlet may post
    SELECT coalesce(array_agg(x), '{}') INTO allowed
      FROM jsonb_array_elements_text(pol -> 'allowed_codes') AS x;
    IF v_tip > 0 THEN
        parts := parts || jsonb_build_object('code', fl_pos_tip_code(prop), 'amount', v_tip,
                                               'tip', true);
    END IF;
    FOR i IN 0 .. jsonb_array_length(parts) - 1 LOOP
        grp := parts -> i;
        SELECT * INTO c FROM trx_codes
         WHERE property_id = o.property_id AND code = grp ->> 'code';
        IF NOT FOUND OR NOT (c.code = ANY (allowed)) OR c.kind <> 'charge' OR NOT c.enabled THEN
            RETURN fl_pos_record(o, v_key, v_hash, p, fl_pos_answer('DN', 'code_not_allowed',
                format('this outlet may not post %s%s', grp ->> 'code',
                       CASE WHEN grp ? 'tip' THEN ' (the tip code)'
                            WHEN c.id IS NOT NULL AND c.code = ANY (allowed) THEN
                                 format(' (a %s%s code)', CASE WHEN c.enabled THEN ''
                                                               ELSE 'disabled ' END, c.kind)
                            ELSE '' END),
                jsonb_build_object('key', v_key, 'code', grp ->> 'code')), prop.business_date);
        END IF;
        -- 4. what the engine will post for it: the charge and its generated lines
        sum_group := 0;
        FOR sp IN SELECT * FROM fl_code_split(c.id, (grp ->> 'amount')::bigint) LOOP
            sum_group := sum_group + sp.amount;
            IF sp.seq = 0 THEN
                IF NOT grp ? 'tip' THEN
                    sum_charges := sum_charges + sp.amount;
                END IF;
            ELSIF sp.kind = 'service' THEN
                sum_service := sum_service + sp.amount;
            ELSE
                sum_tax := sum_tax + sp.amount;
            END IF;
        END LOOP;
        sum_lines := sum_lines + sum_group;
        codes := codes || c;
        parts := jsonb_set(parts, ARRAY[i::text],
                            grp || jsonb_build_object('code_id', c.id, 'total', sum_group));
    END LOOP;

    -- 4. the total equals the sum of its parts (DM)
    expected := jsonb_build_object('total', sum_lines, 'tax', sum_tax, 'service', sum_service,
                                   'tip', v_tip, 'charges', sum_charges);
    IF v_tax IS NOT NULL AND v_tax <> sum_tax THEN
        RETURN fl_pos_record(o, v_key, v_hash, p, fl_pos_answer('DM', 'tax_mismatch',
            format('tax %s does not equal the tax of the subtotals, %s', fl_money(v_tax, mu),
                   fl_money(sum_tax, mu)),
            jsonb_build_object('key', v_key, 'expected', expected)), prop.business_date);
    END IF;
    IF v_service IS NOT NULL AND v_service <> sum_service THEN
        RETURN fl_pos_record(o, v_key, v_hash, p, fl_pos_answer('DM', 'service_mismatch',
            format('service %s does not equal the service charge of the subtotals, %s',
                   fl_money(v_service, mu), fl_money(sum_service, mu)),
            jsonb_build_object('key', v_key, 'expected', expected)), prop.business_date);
    END IF;
    IF v_total <> sum_lines THEN
        RETURN fl_pos_record(o, v_key, v_hash, p, fl_pos_answer('DM', 'total_mismatch',
            format('total %s does not equal the sum of its parts, %s (charges %s, service %s, '
                   'tax %s, tip %s)', fl_money(v_total, mu), fl_money(sum_lines, mu),
                   fl_money(sum_charges, mu), fl_money(sum_service, mu),
                   fl_money(sum_tax, mu), fl_money(v_tip, mu)),
            jsonb_build_object('key', v_key, 'expected', expected)), prop.business_date);
    END IF;

    -- 5. the outlet's limit per posting
    v_limit := (pol ->> 'max_per_posting')::bigint;
    IF v_limit IS NOT NULL AND v_total > v_limit THEN
        RETURN fl_pos_record(o, v_key, v_hash, p, fl_pos_answer('DN', 'outlet_limit',
            format('total %s is over this outlet''s limit of %s per posting',
                   fl_money(v_total, mu), fl_money(v_limit, mu)),
            jsonb_build_object('key', v_key, 'limit', 'max_per_posting')), prop.business_date);
    END IF;

    -- 6. the guest
    found_stay := fl_pos_find_stay(o, prop, v_room, v_stay, v_hours);
    IF found_stay.answer IS NOT NULL THEN
        RETURN fl_pos_record(o, v_key, v_hash, p,
                             found_stay.answer || jsonb_build_object('key', v_key),
                             prop.business_date);
    END IF;
    SELECT * INTO s FROM stays WHERE id = found_stay.stay_id FOR NO KEY UPDATE;
    SELECT * INTO g FROM guests WHERE id = s.guest_id;
    IF s.status = 'checked_out' THEN
        IF v_hours = 0 THEN
            RETURN fl_pos_record(o, v_key, v_hash, p, fl_pos_answer('NG', 'checked_out',
                format('the guest of room %s (stay %s) checked out at %s; this outlet posts no '
                       'late charges', v_room, s.number,
                       fl_pos_local_time(s.checked_out_at, prop)),
                jsonb_build_object('key', v_key)), prop.business_date, s.id);
        END IF;
        IF NOT fl_pos_late_ok(s, v_hours) THEN
            RETURN fl_pos_record(o, v_key, v_hash, p, fl_pos_answer('DN', 'late_charge_window',
                format('the guest of room %s (stay %s) checked out at %s, more than %s hour(s) '
                       'ago: the front desk must post it', v_room, s.number,
                       fl_pos_local_time(s.checked_out_at, prop), v_hours),
                jsonb_build_object('key', v_key)), prop.business_date, s.id);
        END IF;
        v_late := true;
    END IF;

    -- 7. the name, when given or required (never telling which name was expected)
    IF v_name IS NULL AND (pol ->> 'name_match_required')::boolean THEN
        RETURN fl_pos_record(o, v_key, v_hash, p, fl_pos_answer('NG', 'name_mismatch',
            'this outlet must send the guest''s name (guest_name)',
            jsonb_build_object('key', v_key)), prop.business_date, s.id);
    END IF;
    IF v_name IS NOT NULL AND NOT fl_pos_name_matches(v_name, g) THEN
        RETURN fl_pos_record(o, v_key, v_hash, p, fl_pos_answer('NG', 'name_mismatch',
            format('the name "%s" does not match the guest of room %s', v_name, v_room),
            jsonb_build_object('key', v_key)), prop.business_date, s.id);
    END IF;

    -- 8. no-post
    IF s.no_post THEN
        RETURN fl_pos_record(o, v_key, v_hash, p, fl_pos_answer('NP', 'no_post',
            format('postings to the guest of room %s are blocked (no-post): ask for another '
                   'payment', v_room),
            jsonb_build_object('key', v_key)), prop.business_date, s.id);
    END IF;

    -- 9. inquiry before post
    IF (pol ->> 'inquiry_required')::boolean
       AND NOT EXISTS (SELECT 1 FROM pos_inquiries q
                        WHERE q.outlet_id = o.id AND s.id = ANY (q.stay_ids)
                          AND q.created_at > now() - fl_pos_inquiry_validity()) THEN
        RETURN fl_pos_record(o, v_key, v_hash, p, fl_pos_answer('DN', 'inquiry_required',
            format('this outlet must inquire about the guest of room %s (pos.inquiry) before '
                   'posting', v_room),
            jsonb_build_object('key', v_key)), prop.business_date, s.id);
    END IF;

    -- 10. the outlet's limit per business date (its OK postings of the date)
    v_limit := (pol ->> 'max_per_day')::bigint;
    IF v_limit IS NOT NULL THEN
        SELECT coalesce(sum(q.total), 0) INTO v_used FROM pos_requests q
         WHERE q.outlet_id = o.id AND q.status = 'OK' AND q.business_date = prop.business_date;
        IF v_used + v_total > v_limit THEN
            RETURN fl_pos_record(o, v_key, v_hash, p, fl_pos_answer('DN', 'outlet_limit',
                format('total %s would take this outlet''s postings of %s to %s, over its limit '
                       'of %s per day', fl_money(v_total, mu), prop.business_date,
                       fl_money(v_used + v_total, mu), fl_money(v_limit, mu)),
                jsonb_build_object('key', v_key, 'limit', 'max_per_day')),
                prop.business_date, s.id);
        END IF;
    END IF;

    -- 11. the folios the lines land on (routing applies): each must be open, except window 1
    -- of a stay checked out within the window, which the late charge reopens
    w1 := fl_stay_window(s.id, 1);
    FOR i IN 0 .. jsonb_array_length(parts) - 1 LOOP
        grp := parts -> i;
        c := codes[i + 1];
        rt := fl_route_target(w1, c);
        reopen_w1 := reopen_w1 OR (rt.folio_id = w1.id AND w1.status <> 'open');
        IF rt.target_closed IS NOT NULL
           OR (rt.folio_id = w1.id AND w1.status <> 'open' AND NOT v_late) THEN
            RETURN fl_pos_record(o, v_key, v_hash, p, fl_pos_answer('IA', 'folio_closed',
                format('the folio %s charges of %s for room %s go to is closed: the front desk '
                       'must post it', (SELECT f.number FROM folios f
                                         WHERE f.id = coalesce(rt.target_closed, w1.id)),
                       c.code, v_room),
                jsonb_build_object('key', v_key)), prop.business_date, s.id);
        END IF;
        -- 12. credit: what lands on each account (a stay's windows together, or a master)
        -- (window 1 of a stay without a limit has no "available": nothing to read)
        cpos := CASE WHEN rt.folio_id = w1.id AND s.credit_limit IS NULL THEN NULL
                     ELSE fl_credit_position(rt.folio_id) END;
        IF cpos IS NOT NULL AND cpos ->> 'available' IS NOT NULL THEN
            acct := coalesce('s' || (cpos ->> 'stay_id'), 'g' || (cpos ->> 'group_id'));
            credit := jsonb_set(credit, ARRAY[acct], jsonb_build_object(
                'available', (cpos ->> 'available')::bigint,
                'amount', coalesce((credit #>> ARRAY[acct, 'amount'])::bigint, 0)
                          + (grp ->> 'total')::bigint));
        END IF;
    END LOOP;
    SELECT coalesce(max((e.value ->> 'amount')::bigint - (e.value ->> 'available')::bigint), 0)
      INTO over_by FROM jsonb_each(credit) AS e;
    IF over_by > 0 THEN
        IF pol ->> 'credit_policy' = 'refuse' THEN
            RETURN fl_pos_record(o, v_key, v_hash, p, fl_pos_answer('CO', 'credit_limit',
                format('the credit limit of the guest of room %s would be exceeded%s: ask for '
                       'another payment', v_room,
                       CASE WHEN (pol ->> 'may_see_credit')::boolean
                            THEN format(' by %s', fl_money(over_by, mu)) ELSE '' END),
                jsonb_build_object('key', v_key)
                || CASE WHEN (pol ->> 'may_see_credit')::boolean
                        THEN jsonb_build_object('credit_available', fl_pos_credit_available(s))
                        ELSE '{}' END), prop.business_date, s.id);
        END IF;
        warnings := warnings || 'deposit_required'::text;
    END IF;

    -- 13. post through the engine: source pos, reference = the check number, routing applied
    IF reopen_w1 THEN
        PERFORM fl_folio_for_posting(ctx, w1.id, true);
    END IF;
    FOR i IN 0 .. jsonb_array_length(parts) - 1 LOOP
        grp := parts -> i;
        c := codes[i + 1];
        res := fl_post_charge(ctx, w1.id, c.id, (grp ->> 'amount')::bigint, 1,
                              left(o.name || ': ' || CASE WHEN grp ? 'tip' THEN 'tip'
                                                          ELSE c.description END
                                   || coalesce(' (' || v_desc || ')', ''), 200),
                              v_check, 'pos', true);
        routed := routed OR (res ->> 'routed')::boolean;
        IF res -> 'warnings' ? 'deposit_required' AND NOT ('deposit_required' = ANY (warnings))
        THEN
            warnings := warnings || 'deposit_required'::text;
        END IF;
        -- the engine's lines come in id order: the charge, then its generated lines
        FOR k IN 0 .. jsonb_array_length(res -> 'postings') - 1 LOOP
            l := res -> 'postings' -> k;
            lines := lines || jsonb_build_array(jsonb_build_object(
                'id', l -> 'id', 'folio_id', l -> 'folio_id', 'code', l -> 'code',
                'type', l -> 'type', 'amount', l -> 'amount'));
            ids := ids || (l ->> 'id')::bigint;
        END LOOP;
    END LOOP;

    answer := fl_pos_answer('OK', 'posted',
        format('posted %s %s on room %s (stay %s), check %s%s', fl_money(v_total, mu),
               prop.currency, v_room, s.number, v_check,
               CASE WHEN v_late THEN ', as a late charge after checkout' ELSE '' END),
        jsonb_build_object(
            'key', v_key, 'check', v_check, 'room', v_room, 'stay_id', s.id,
            'reservation', s.number, 'last_name', g.last_name,
            'business_date', prop.business_date, 'total', v_total, 'tax', sum_tax,
            'service', sum_service, 'tip', v_tip, 'late_charge', v_late, 'routed', routed,
            'postings', lines, 'warnings', to_jsonb(warnings)));
    PERFORM fl_pos_record(o, v_key, v_hash, p, answer, prop.business_date, s.id, v_total, ids);
    RETURN answer || jsonb_build_object('replayed', false);
END
$$;
