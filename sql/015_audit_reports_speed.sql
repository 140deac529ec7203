-- 015_audit_reports_speed.sql - the night audit's reports with the same content for less work
-- (docs/audit.md, "Speed").
--
--   - guest_ledger: the balance of each in-house stay came from a sub-select over every folio's
--     balance, run once per stay (1,000 stays times some 5,000 folios after a month); the
--     balances are now summed per stay once and joined.
--   - trial_balance (the verify step, and the deposits report): the day's lines and the closing
--     balances were read once per ledger, and for the guest ledger PostgreSQL, which cannot
--     estimate fl_audit_ledger(f.type), walked every folio's postings instead of the day's;
--     both are now read once, grouped by ledger;
--   - the deposits held (trial balance, deposits report) came from a pass over every posting of
--     the property's history, twice; they are now reached from the stays in house on the date;
--   - high_balance: as guest_ledger, the stays' balances are summed once.
--
-- Applied once by the migrate command inside one transaction; never edited once landed.

-- The guest ledger report of 009, the stays' balances summed once.
CREATE OR REPLACE FUNCTION fl_audit_report_guest_ledger(v_property_id bigint, v_date date)
RETURNS jsonb
LANGUAGE sql STABLE AS $$
    WITH b AS (SELECT * FROM fl_audit_folio_balances(v_property_id, v_date)),
    per_stay AS (
        SELECT b.stay_id, sum(b.balance) AS balance FROM b WHERE b.stay_id IS NOT NULL
         GROUP BY b.stay_id
    ), ih AS (
        SELECT s.id, s.number, rm.number AS room, g.first_name || ' ' || g.last_name AS guest,
               s.arrival, s.departure, s.adults, s.children, s.rate, s.credit_limit,
               gr.code AS grp, length(rm.number) AS rl,
               coalesce(ps.balance, 0)::bigint AS balance
          FROM fl_audit_in_house(v_property_id, v_date) s
          JOIN rooms rm ON rm.id = s.room_id JOIN guests g ON g.id = s.guest_id
          LEFT JOIN groups gr ON gr.id = s.group_id
          LEFT JOIN per_stay ps ON ps.stay_id = s.id
    ), fo AS (
        SELECT b.*, f.number, f.window_no, f.status,
               coalesce(f.name, g.first_name || ' ' || g.last_name, gr.name) AS name,
               s.number AS stay_number, rm.number AS room
          FROM b JOIN folios f ON f.id = b.folio_id
          LEFT JOIN stays s ON s.id = f.stay_id LEFT JOIN rooms rm ON rm.id = s.room_id
          LEFT JOIN guests g ON g.id = s.guest_id LEFT JOIN groups gr ON gr.id = f.group_id
         WHERE b.ledger IN ('guest', 'house') AND b.balance <> 0
    )
    SELECT jsonb_build_object(
        'stays', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                             'stay_id', ih.id, 'number', ih.number, 'room', ih.room,
                             'guest', ih.guest, 'group', ih.grp, 'arrival', ih.arrival,
                             'departure', ih.departure, 'adults', ih.adults,
                             'children', ih.children, 'rate', ih.rate,
                             'credit_limit', ih.credit_limit, 'balance', ih.balance)
                             ORDER BY ih.rl, ih.room, ih.id), '[]'::jsonb) FROM ih),
        'folios', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                              'folio_id', fo.folio_id, 'number', fo.number, 'type', fo.type,
                              'ledger', fo.ledger, 'window', fo.window_no, 'name', fo.name,
                              'stay_number', fo.stay_number, 'room', fo.room,
                              'status', fo.status, 'balance', fo.balance)
                              ORDER BY fo.ledger, fo.folio_id), '[]'::jsonb) FROM fo),
        'totals', jsonb_build_object(
            'stays', (SELECT count(*) FROM ih),
            'guests', (SELECT coalesce(sum(ih.adults + ih.children), 0) FROM ih),
            'in_house_balance', (SELECT coalesce(sum(ih.balance), 0)::bigint FROM ih),
            'guest_ledger', (SELECT coalesce(sum(b.balance), 0)::bigint FROM b
                              WHERE b.ledger = 'guest'),
            'house_ledger', (SELECT coalesce(sum(b.balance), 0)::bigint FROM b
                              WHERE b.ledger = 'house')))
$$;

-- The trial balance of 009, the day's lines and the closing balances read once.
CREATE OR REPLACE FUNCTION fl_audit_trial_balance(v_property_id bigint, v_date date) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
    prev jsonb;
    ledgers jsonb := '{}';
    lg text;
    m record;
    opening bigint;
    closing bigint;
    computed bigint;
    ok boolean := true;
    dep record;
    mismatched jsonb;
    ar_bad jsonb;
    day jsonb;
    closings jsonb;
BEGIN
    SELECT content INTO prev FROM audit_reports
     WHERE property_id = v_property_id AND business_date = v_date - 1 AND kind = 'trial_balance';
    -- the day's lines and the closing balances of the three ledgers, each in one pass
    SELECT coalesce(jsonb_object_agg(x.ledger, to_jsonb(x)), '{}') INTO day
      FROM (SELECT fl_audit_ledger(f.type) AS ledger,
                   coalesce(sum(p.amount) FILTER (WHERE c.kind <> 'payment'
                                AND p.type NOT IN ('transfer_in', 'transfer_out')), 0)::bigint
                       AS charges,
                   (-coalesce(sum(p.amount) FILTER (WHERE c.kind = 'payment'
                                AND p.type NOT IN ('transfer_in', 'transfer_out')), 0))::bigint
                       AS credits,
                   coalesce(sum(p.amount) FILTER (WHERE p.type = 'transfer_in'), 0)::bigint
                       AS t_in,
                   coalesce(sum(p.amount) FILTER (WHERE p.type = 'transfer_out'), 0)::bigint
                       AS t_out,
                   count(*) AS lines
              FROM postings p
              JOIN folios f ON f.id = p.folio_id
              JOIN trx_codes c ON c.id = p.trx_code_id
             WHERE p.property_id = v_property_id AND p.business_date = v_date
             GROUP BY 1) AS x;
    SELECT coalesce(jsonb_object_agg(y.ledger, y.closing), '{}') INTO closings
      FROM (SELECT b.ledger, coalesce(sum(b.balance), 0)::bigint AS closing
              FROM fl_audit_folio_balances(v_property_id, v_date) b GROUP BY 1) AS y;
    FOR lg IN SELECT unnest(ARRAY['guest', 'house', 'city']) LOOP
        SELECT coalesce((day #>> ARRAY[lg, 'charges'])::bigint, 0) AS charges,
               coalesce((day #>> ARRAY[lg, 'credits'])::bigint, 0) AS credits,
               coalesce((day #>> ARRAY[lg, 't_in'])::bigint, 0) AS t_in,
               coalesce((day #>> ARRAY[lg, 't_out'])::bigint, 0) AS t_out,
               coalesce((day #>> ARRAY[lg, 'lines'])::bigint, 0) AS lines
          INTO m;
        closing := coalesce((closings ->> lg)::bigint, 0);
        IF prev IS NOT NULL THEN
            opening := (prev #>> ARRAY['ledgers', lg, 'closing'])::bigint;
        ELSE
            SELECT coalesce(sum(p.amount), 0)::bigint INTO opening
              FROM postings p JOIN folios f ON f.id = p.folio_id
             WHERE p.property_id = v_property_id AND p.business_date < v_date
               AND fl_audit_ledger(f.type) = lg;
        END IF;
        computed := opening + m.charges - m.credits + m.t_in + m.t_out;
        ok := ok AND computed = closing;
        ledgers := ledgers || jsonb_build_object(lg, jsonb_build_object(
            'opening', opening, 'charges', m.charges, 'credits', m.credits,
            'transfers_in', m.t_in, 'transfers_out', m.t_out,
            'transfers', m.t_in + m.t_out, 'lines', m.lines, 'closing', closing,
            'computed_closing', computed, 'difference', closing - computed,
            'ok', computed = closing));
    END LOOP;

    -- the deposit ledger
    WITH ih AS (SELECT s.id FROM fl_audit_in_house(v_property_id, v_date) s),
         ih_prev AS (SELECT s.id FROM fl_audit_in_house(v_property_id, v_date - 1) s),
         held AS (SELECT * FROM fl_audit_deposits_held(v_property_id, v_date)),
         held_prev AS (SELECT * FROM fl_audit_deposits_held(v_property_id, v_date - 1))
    SELECT (SELECT coalesce(sum(h.held), 0) FROM held h JOIN ih ON ih.id = h.stay_id)::bigint
               AS closing,
           (SELECT coalesce(sum(h.held), 0) FROM held_prev h JOIN ih_prev ON ih_prev.id = h.stay_id)
               ::bigint AS opening_computed,
           (SELECT coalesce(sum(h.held), 0) FROM held h
              JOIN stays s ON s.id = h.stay_id WHERE s.checkout_date = v_date)::bigint AS applied,
           (SELECT (-coalesce(sum(p.amount), 0))::bigint FROM postings p
              JOIN trx_codes c ON c.id = p.trx_code_id JOIN folios f ON f.id = p.folio_id
             WHERE p.property_id = v_property_id AND p.business_date = v_date
               AND c.kind = 'payment' AND c.payment_method = 'deposit'
               AND f.stay_id IS NOT NULL) AS received
      INTO dep;
    opening := coalesce((prev #>> '{ledgers,deposit,closing}')::bigint, dep.opening_computed);
    computed := opening + dep.received - dep.applied;
    ok := ok AND computed = dep.closing;
    ledgers := ledgers || jsonb_build_object('deposit', jsonb_build_object(
        'opening', opening, 'received', dep.received, 'applied', dep.applied,
        'closing', dep.closing, 'computed_closing', computed,
        'difference', dep.closing - computed, 'ok', computed = dep.closing));

    SELECT coalesce(jsonb_agg(jsonb_build_object('folio_id', x.folio_id, 'number', x.number,
                                                 'balance', x.balance,
                                                 'postings_sum', x.postings_sum)
                              ORDER BY x.folio_id), '[]'::jsonb)
      INTO mismatched FROM fl_ledger_check(v_property_id) x;
    SELECT coalesce(jsonb_agg(jsonb_build_object('account', x.code, 'balance', x.balance,
                                                 'open_invoices', x.open_invoices)
                              ORDER BY x.code), '[]'::jsonb)
      INTO ar_bad FROM fl_ar_check(v_property_id) x;
    ok := ok AND jsonb_array_length(mismatched) = 0 AND jsonb_array_length(ar_bad) = 0;
    RETURN jsonb_build_object(
        'ledgers', ledgers,
        'total', jsonb_build_object(
            'opening', (SELECT sum((ledgers #>> ARRAY[k, 'opening'])::bigint)
                          FROM unnest(ARRAY['guest', 'house', 'city']) k),
            'charges', (SELECT sum((ledgers #>> ARRAY[k, 'charges'])::bigint)
                          FROM unnest(ARRAY['guest', 'house', 'city']) k),
            'credits', (SELECT sum((ledgers #>> ARRAY[k, 'credits'])::bigint)
                          FROM unnest(ARRAY['guest', 'house', 'city']) k),
            'transfers', (SELECT sum((ledgers #>> ARRAY[k, 'transfers'])::bigint)
                            FROM unnest(ARRAY['guest', 'house', 'city']) k),
            'closing', (SELECT sum((ledgers #>> ARRAY[k, 'closing'])::bigint)
                          FROM unnest(ARRAY['guest', 'house', 'city']) k)),
        'opening_source', CASE WHEN prev IS NOT NULL THEN 'stored' ELSE 'computed' END,
        'folio_mismatches', mismatched, 'city_ledger_mismatches', ar_bad, 'ok', ok);
END
$$;

-- Deposits held per stay through v_date, as in 009, for the stays in house at some time on
-- v_date (arrived by then, not checked out before it): the only ones its callers ask about
-- (the stays in house at the end of v_date or of the day before, and those checked out on
-- v_date). Reached from those stays' folios instead of a pass over every posting of the
-- property's history.
CREATE OR REPLACE FUNCTION fl_audit_deposits_held(v_property_id bigint, v_date date)
RETURNS TABLE (stay_id bigint, held bigint)
LANGUAGE sql STABLE AS $$
    SELECT s.id, (-sum(p.amount))::bigint
      FROM stays s
      JOIN folios f ON f.stay_id = s.id
      JOIN postings p ON p.folio_id = f.id
      JOIN trx_codes c ON c.id = p.trx_code_id
     WHERE s.property_id = v_property_id AND s.arrival <= v_date
       AND (s.checkout_date IS NULL OR s.checkout_date >= v_date)
       AND p.business_date <= v_date
       AND c.kind = 'payment' AND c.payment_method = 'deposit'
     GROUP BY s.id
$$;

-- The high balance report of 009, the stays' balances summed once (it summed every folio's
-- balance again for each stay in house).
CREATE OR REPLACE FUNCTION fl_audit_report_high_balance(v_property_id bigint, v_date date)
RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
    threshold bigint := fl_audit_setting_int((SELECT settings FROM properties
                                               WHERE id = v_property_id),
                                              'audit_high_balance', NULL, 0, 1000000000000);
BEGIN
    RETURN jsonb_build_object(
        'threshold', threshold,
        'items', (SELECT coalesce(jsonb_agg(x.j ORDER BY x.o, x.k), '[]'::jsonb) FROM (
            WITH fb AS (SELECT * FROM fl_audit_folio_balances(v_property_id, v_date)),
            per_stay AS (
                SELECT fb.stay_id, sum(fb.balance) AS bal FROM fb WHERE fb.stay_id IS NOT NULL
                 GROUP BY fb.stay_id
            )
            SELECT 1 AS o, s.id AS k, jsonb_build_object(
                       'kind', 'stay', 'stay_id', s.id, 'number', s.number, 'room', rm.number,
                       'guest', g.first_name || ' ' || g.last_name, 'balance', s.bal,
                       'credit_limit', s.credit_limit,
                       'over_limit', coalesce(s.bal > s.credit_limit, false),
                       'over_by', CASE WHEN s.bal > s.credit_limit
                                       THEN s.bal - s.credit_limit END) AS j
              FROM (SELECT ih.*, coalesce(ps.bal, 0)::bigint AS bal
                      FROM fl_audit_in_house(v_property_id, v_date) ih
                      LEFT JOIN per_stay ps ON ps.stay_id = ih.id) s
              JOIN rooms rm ON rm.id = s.room_id JOIN guests g ON g.id = s.guest_id
             WHERE s.bal > s.credit_limit OR s.bal >= threshold
            UNION ALL
            SELECT 2, gr.id, jsonb_build_object(
                       'kind', 'group', 'group_id', gr.id, 'group', gr.code, 'name', gr.name,
                       'balance', fb.balance, 'credit_limit', gr.credit_limit,
                       'over_limit', true, 'over_by', fb.balance - gr.credit_limit)
              FROM groups gr
              JOIN fb ON fb.folio_id = gr.master_folio_id
             WHERE gr.property_id = v_property_id AND gr.arrival <= v_date
               AND gr.status = 'open' AND fb.balance > gr.credit_limit) x));
END
$$;
