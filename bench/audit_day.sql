-- bench/audit_day.sql - one business day of front-desk work in the audit hotel of make bench
-- (bench/run.sh: a 1,000-room property, 30 audited days, then the measured audit).
--
-- CALL bench_audit_day(property, cashier, day, charges, payments) does what the front desk of
-- a busy hotel does on the open business date, through foliod's own API functions with the
-- cashier's context (the SQL the daemon runs for stay.check_in, folio.post, folio.pay,
-- stay.check_out, cashier.open and cashier.close: every rule and trigger applies; nothing is
-- written to the tables directly), one transaction per call as through the daemon:
--   1. the cashier opens a shift;
--   2. every stay due out (departure on or before the date) checks out, each open window
--      settled by card;
--   3. new guests check in to vacant rooms until 86-94% of the rooms are occupied (1-7 nights,
--      rate 80.00-160.00, one or two adults);
--   4. `charges` restaurant and bar charges (FOOD or BEV, with their service and VAT) to random
--      in-house stays, and `payments` card payments on account (up to half the balance);
--   5. the cashier closes the shift (card only: the cash counted is the float).
-- The night audit of the date is then run by foliod (audit.run), so the history is real audited
-- days. Deterministic for a given day (setseed). The procedure lives only in the bench database;
-- foliod's schema is not changed.
CREATE OR REPLACE PROCEDURE bench_audit_day(p_property text, p_cashier text, p_day integer,
                                            p_charges integer, p_payments integer)
LANGUAGE plpgsql AS $$
DECLARE
    ctx jsonb;
    v_prop properties;
    v_shift bigint;
    v_target integer;
    v_rooms integer;
    v_in integer;
    r record;
    w jsonb;
    v_pay jsonb;
    v_ids bigint[];
    v_n integer;
    v_bal bigint;
BEGIN
    SELECT * INTO v_prop FROM properties WHERE code = p_property;
    SELECT jsonb_build_object('user', u.username, 'role', u.role, 'conn', 0, 'peer', 'bench',
                              'user_id', u.id, 'outlet_id', NULL, 'property_id', u.property_id)
      INTO ctx FROM users u WHERE u.username = p_cashier;
    PERFORM setseed(((p_day % 1000) + 1) / 1001.0);

    v_shift := (api_cashier_open(ctx, jsonb_build_object('float', 20000)) ->> 'id')::bigint;
    COMMIT;

    FOR r IN SELECT s.id FROM stays s
              WHERE s.property_id = v_prop.id AND s.status = 'in_house'
                AND s.departure <= v_prop.business_date ORDER BY s.id LOOP
        v_pay := '[]'::jsonb;
        FOR w IN SELECT * FROM jsonb_array_elements(fl_stay_open_balances(r.id)) LOOP
            v_pay := v_pay || jsonb_build_object('window', (w ->> 'window')::integer,
                                                 'method', 'card',
                                                 'amount', (w ->> 'balance')::bigint);
        END LOOP;
        PERFORM api_stay_check_out(ctx, jsonb_build_object('stay_id', r.id, 'payments', v_pay));
        COMMIT;
    END LOOP;

    SELECT count(*) INTO v_rooms FROM rooms WHERE property_id = v_prop.id;
    SELECT count(*) INTO v_in FROM stays WHERE property_id = v_prop.id AND status = 'in_house';
    v_target := (v_rooms * (0.86 + random() * 0.08))::integer;
    FOR r IN SELECT rm.number FROM rooms rm
              WHERE rm.property_id = v_prop.id AND rm.status <> 'out_of_order'
                AND NOT EXISTS (SELECT 1 FROM stays s
                                 WHERE s.room_id = rm.id AND s.status = 'in_house')
              ORDER BY random() LIMIT greatest(v_target - v_in, 0) LOOP
        PERFORM api_stay_check_in(ctx, jsonb_build_object(
            'property', p_property, 'room', r.number,
            'guest', jsonb_build_object('first_name', 'Guest',
                                        'last_name', 'D' || p_day || 'R' || r.number),
            'departure', v_prop.business_date + 1 + (random() * 6)::integer,
            'rate', 8000 + 500 * (random() * 16)::integer,
            'adults', 1 + (random() < 0.6)::integer));
        COMMIT;
    END LOOP;

    SELECT array_agg(id) INTO v_ids FROM stays
     WHERE property_id = v_prop.id AND status = 'in_house';
    v_n := coalesce(array_length(v_ids, 1), 0);
    IF v_n > 0 THEN
        FOR i IN 1 .. p_charges LOOP
            PERFORM api_folio_post(ctx, jsonb_build_object(
                'stay_id', v_ids[1 + (random() * (v_n - 1))::integer],
                'code', CASE WHEN random() < 0.6 THEN 'FOOD' ELSE 'BEV' END,
                'amount', 800 + 100 * (random() * 60)::integer,
                'reference', 'bench-' || p_day || '-' || i));
            COMMIT;
        END LOOP;
        FOR i IN 1 .. p_payments LOOP
            SELECT f.balance INTO v_bal FROM folios f
             WHERE f.stay_id = v_ids[1 + (i * 7919) % v_n] AND f.window_no = 1;
            IF coalesce(v_bal, 0) >= 200 THEN
                PERFORM api_folio_pay(ctx, jsonb_build_object(
                    'stay_id', v_ids[1 + (i * 7919) % v_n], 'method', 'card',
                    'amount', v_bal / 2));
                COMMIT;
            END IF;
        END LOOP;
    END IF;

    PERFORM api_cashier_close(ctx, jsonb_build_object('shift_id', v_shift, 'declared', 20000));
    COMMIT;
END
$$;
