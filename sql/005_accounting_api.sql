-- 005_accounting_api.sql - the guest-accounting RPC methods (docs/accounting.md).
--
-- One function per method, api_<area>_<verb>(ctx jsonb, p jsonb) RETURNS jsonb:
--   stay.check_in/get/list/update/move/check_out/reinstate, group.create/get/check_out,
--   folio.open/get/list/close/reopen/post/pay/void/adjust/transfer/transfer_balance,
--   routing.set/clear/list, business_date.close. folio.statement is in 006.
-- Each call is one statement, hence one transaction. The money moves go through the engine of
-- 004 (fl_post_charge, fl_post_payment, fl_void_posting, fl_adjust_posting,
-- fl_transfer_postings, fl_transfer_balance), so POS and the night audit post the same way.
--
-- Applied once by the migrate command inside one transaction; never edited once landed.

-- ---------------------------------------------------------------------------------------------
-- Parameter helpers
-- ---------------------------------------------------------------------------------------------

-- The folio a posting method addresses: folio_id, or stay_id with window (default 1).
CREATE FUNCTION fl_p_folio_target(ctx jsonb, p jsonb) RETURNS folios
LANGUAGE plpgsql AS $$
DECLARE
    v_folio bigint := fl_p_id(p, 'folio_id', '', false);
    v_stay bigint := fl_p_id(p, 'stay_id', '', false);
    v_window integer := fl_p_int(p, 'window', '', false, 1, 8);
    s stays;
    f folios;
BEGIN
    IF v_folio IS NOT NULL THEN
        IF v_stay IS NOT NULL OR v_window IS NOT NULL THEN
            PERFORM fl_fail('invalid_params', 'give folio_id, or stay_id with window, not both');
        END IF;
        RETURN fl_folio_find(ctx, v_folio);
    END IF;
    IF v_stay IS NULL THEN
        PERFORM fl_fail('invalid_params', 'folio_id or stay_id is required');
    END IF;
    s := fl_stay_find(ctx, v_stay);
    f := fl_stay_window(s.id, coalesce(v_window, 1));
    IF f.id IS NULL THEN
        PERFORM fl_fail('not_found', format('stay %s has no window %s', s.number,
                                            coalesce(v_window, 1)));
    END IF;
    RETURN f;
END
$$;

-- The payment code of a payment: "code" (a payment code) or "method" (the one enabled payment
-- code of the property with that method).
CREATE FUNCTION fl_p_payment_code(v_property_id bigint, p jsonb, path text) RETURNS trx_codes
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_method text := fl_p_enum(p, 'method', path, false,
                               ARRAY['cash', 'card', 'deposit', 'bank_transfer']);
    v_code text := fl_p_code(p, 'code', path, false);
    c trx_codes;
    n integer;
BEGIN
    IF (v_method IS NULL) = (v_code IS NULL) THEN
        PERFORM fl_fail('invalid_params', path || 'give the payment method or the payment code');
    END IF;
    IF v_code IS NOT NULL THEN
        SELECT * INTO c FROM trx_codes WHERE property_id = v_property_id AND code = v_code;
        IF NOT FOUND THEN
            PERFORM fl_fail('not_found', format('%scode: transaction code %s does not exist',
                                                path, v_code));
        END IF;
        IF c.kind <> 'payment' OR NOT c.enabled THEN
            PERFORM fl_fail('invalid_code', format('%scode: %s is not an enabled payment code',
                                                   path, v_code));
        END IF;
        RETURN c;
    END IF;
    SELECT count(*) INTO n FROM trx_codes
     WHERE property_id = v_property_id AND kind = 'payment' AND payment_method = v_method
       AND enabled;
    IF n = 0 THEN
        PERFORM fl_fail('not_found', format('%smethod: no enabled payment code for %s', path,
                                            v_method));
    END IF;
    IF n > 1 THEN
        PERFORM fl_fail('invalid_params', format('%smethod: several payment codes take %s: give '
                                                 'the code', path, v_method));
    END IF;
    SELECT * INTO c FROM trx_codes
     WHERE property_id = v_property_id AND kind = 'payment' AND payment_method = v_method
       AND enabled;
    RETURN c;
END
$$;

-- Creates a guest profile (o.id NULL) or applies the members of g to it. Logged.
CREATE FUNCTION fl_guest_save(ctx jsonb, v_property_id bigint, o guests, g jsonb, path text)
RETURNS guests
LANGUAGE plpgsql AS $$
DECLARE
    n guests := o;
BEGIN
    g := fl_params(g, path);
    PERFORM fl_check_keys(g, ARRAY['first_name', 'last_name', 'email', 'phone', 'notes'], path);
    IF o.id IS NULL OR g ? 'first_name' THEN
        n.first_name := fl_p_text(g, 'first_name', path, true, 100);
    END IF;
    IF o.id IS NULL OR g ? 'last_name' THEN
        n.last_name := fl_p_text(g, 'last_name', path, true, 100);
    END IF;
    IF g ? 'email' THEN
        n.email := fl_p_match(g, 'email', path, false, '^[^@\s]+@[^@\s]+$',
                              'an e-mail address (name@domain)');
        IF length(n.email) > 200 THEN
            PERFORM fl_fail('invalid_params', path || 'email must be at most 200 characters');
        END IF;
    END IF;
    IF g ? 'phone' THEN
        n.phone := fl_p_match(g, 'phone', path, false, '^[0-9+() ./-]{3,32}$',
                              'a telephone number (3 to 32 digits, spaces, +()./-)');
    END IF;
    IF g ? 'notes' THEN
        n.notes := fl_p_text(g, 'notes', path, false, 1000);
    END IF;
    IF o.id IS NULL THEN
        INSERT INTO guests (property_id, first_name, last_name, email, phone, notes, created_by,
                            updated_by)
        VALUES (v_property_id, n.first_name, n.last_name, n.email, n.phone, n.notes,
                fl_actor(ctx), fl_actor(ctx))
        RETURNING * INTO n;
        PERFORM fl_log(ctx, v_property_id, 'guest', n.id, 'create', fl_guest_json(n));
        RETURN n;
    END IF;
    IF n IS NOT DISTINCT FROM o THEN
        RETURN o;
    END IF;
    UPDATE guests SET first_name = n.first_name, last_name = n.last_name, email = n.email,
                      phone = n.phone, notes = n.notes, updated_at = now(),
                      updated_by = fl_actor(ctx)
     WHERE id = o.id RETURNING * INTO n;
    PERFORM fl_log(ctx, v_property_id, 'guest', n.id, 'update',
                   fl_diff(fl_guest_json(o), fl_guest_json(n)));
    RETURN n;
END
$$;

-- Sets a room's status (logged like room.update) when it changes.
CREATE FUNCTION fl_room_set_status(ctx jsonb, v_room_id bigint, v_status text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    o rooms;
    n rooms;
BEGIN
    SELECT * INTO o FROM rooms WHERE id = v_room_id FOR UPDATE;
    IF o.status = v_status THEN
        RETURN;
    END IF;
    UPDATE rooms SET status = v_status, updated_at = now(), updated_by = fl_actor(ctx)
     WHERE id = v_room_id RETURNING * INTO n;
    PERFORM fl_log(ctx, n.property_id, 'room', n.id, 'update',
                   fl_diff(fl_room_json(o), fl_room_json(n)));
END
$$;

-- The in-house stays in a room other than v_except.
CREATE FUNCTION fl_room_others(v_room_id bigint, v_except bigint) RETURNS bigint[]
LANGUAGE sql STABLE AS $$
    SELECT coalesce(array_agg(s.id ORDER BY s.id), '{}') FROM stays s
     WHERE s.room_id = v_room_id AND s.status = 'in_house' AND s.id IS DISTINCT FROM v_except
$$;

CREATE FUNCTION fl_room_by_number(v_property_id bigint, v_number text) RETURNS rooms
LANGUAGE plpgsql AS $$
DECLARE
    rm rooms;
BEGIN
    SELECT * INTO rm FROM rooms WHERE property_id = v_property_id AND number = v_number
       FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM fl_fail('not_found', format('room %s does not exist in property %s', v_number,
                                            fl_property_code(v_property_id)));
    END IF;
    RETURN rm;
END
$$;

CREATE FUNCTION fl_stay_in_house(s stays) RETURNS void
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF s.status <> 'in_house' THEN
        PERFORM fl_fail('not_in_house', format('stay %s is checked out', s.number));
    END IF;
END
$$;

-- The non-zero windows of a stay, as data.windows of balance_not_zero.
CREATE FUNCTION fl_stay_open_balances(v_stay_id bigint) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT coalesce(jsonb_agg(jsonb_build_object('window', f.window_no, 'folio_id', f.id,
                                                 'number', f.number, 'balance', f.balance)
                              ORDER BY f.window_no), '[]'::jsonb)
      FROM folios f WHERE f.stay_id = v_stay_id AND f.balance <> 0
$$;

-- Checks a stay out (its windows are all zero): closes the open windows, records who and the
-- business date, frees the room (vacant_dirty unless a sharer stays in it).
CREATE FUNCTION fl_stay_check_out_do(ctx jsonb, s stays) RETURNS stays
LANGUAGE plpgsql AS $$
DECLARE
    f folios;
    n stays;
BEGIN
    FOR f IN SELECT * FROM folios WHERE stay_id = s.id AND status = 'open' ORDER BY id
               FOR NO KEY UPDATE LOOP
        IF f.balance <> 0 THEN
            PERFORM fl_fail_data('balance_not_zero',
                                 format('stay %s: window %s has a balance of %s', s.number,
                                        f.window_no, f.balance),
                                 jsonb_build_object('windows', fl_stay_open_balances(s.id)));
        END IF;
        PERFORM fl_folio_close_do(ctx, f);
    END LOOP;
    UPDATE stays SET status = 'checked_out', checked_out_at = now(),
                     checked_out_by = fl_actor(ctx),
                     checkout_date = (SELECT business_date FROM properties
                                       WHERE id = s.property_id),
                     updated_at = now(), updated_by = fl_actor(ctx)
     WHERE id = s.id RETURNING * INTO n;
    PERFORM 1 FROM rooms WHERE id = s.room_id FOR UPDATE;
    IF cardinality(fl_room_others(s.room_id, s.id)) = 0 THEN
        PERFORM fl_room_set_status(ctx, s.room_id, 'vacant_dirty');
    END IF;
    PERFORM fl_log(ctx, s.property_id, 'stay', s.id, 'check_out',
                   jsonb_build_object('number', s.number, 'checkout_date', n.checkout_date));
    RETURN n;
END
$$;

-- Posts the payments of a checkout ([{window, method | code, amount, reference,
-- description}]) on the stay's windows (on folio v_folio_id when given: a group's master).
CREATE FUNCTION fl_post_payments(ctx jsonb, v_property_id bigint, v_stay_id bigint,
                                 v_folio_id bigint, v_payments jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    item jsonb;
    path text;
    i integer := 0;
    c trx_codes;
    f folios;
    v_window integer;
    v_amount bigint;
    res jsonb := '[]';
BEGIN
    FOR item IN SELECT value FROM jsonb_array_elements(coalesce(v_payments, '[]')) LOOP
        path := format('payments[%s].', i);
        i := i + 1;
        item := fl_params(item, path);
        IF v_folio_id IS NULL THEN
            PERFORM fl_check_keys(item, ARRAY['window', 'method', 'code', 'amount', 'reference',
                                              'description'], path);
            v_window := coalesce(fl_p_int(item, 'window', path, false, 1, 8), 1);
            f := fl_stay_window(v_stay_id, v_window);
            IF f.id IS NULL THEN
                PERFORM fl_fail('not_found', format('%swindow: the stay has no window %s', path,
                                                    v_window));
            END IF;
        ELSE
            PERFORM fl_check_keys(item, ARRAY['method', 'code', 'amount', 'reference',
                                              'description'], path);
            f.id := v_folio_id;
        END IF;
        c := fl_p_payment_code(v_property_id, item, path);
        v_amount := fl_p_amount(item, 'amount', path, true);
        IF v_amount = 0 THEN
            PERFORM fl_fail('invalid_params', path || 'amount must not be zero');
        END IF;
        res := res || (fl_post_payment(ctx, f.id, c.id, v_amount,
                                       fl_p_text(item, 'description', path, false, 200),
                                       fl_p_text(item, 'reference', path, false, 64)) -> 'posting');
    END LOOP;
    RETURN res;
END
$$;

-- ---------------------------------------------------------------------------------------------
-- Stays
-- ---------------------------------------------------------------------------------------------

CREATE FUNCTION api_stay_check_in(ctx jsonb, p jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    prop properties;
    rm rooms;
    g guests;
    gr groups;
    rc trx_codes;
    ct trx_codes;
    s stays;
    sharer stays;
    f folios;
    master folios;
    rr routing_rules;
    v_room text;
    v_guest jsonb;
    v_guest_id bigint;
    v_arrival date;
    v_departure date;
    v_group text;
    v_route boolean;
    v_share bigint;
    v_credit bigint;
    v_rate_code text;
    dflt jsonb;
BEGIN
    p := fl_params(p);
    PERFORM fl_check_keys(p, ARRAY['property', 'room', 'guest', 'guest_id', 'arrival', 'departure',
                                   'adults', 'children', 'rate', 'rate_code', 'credit_limit',
                                   'no_post', 'group', 'route_to_master', 'share_with', 'notes'],
                          '');
    prop := fl_property_scope(ctx, p);
    v_room := fl_p_room_number(p, 'room', '', true);
    v_guest := fl_p_object(p, 'guest', '', false);
    v_guest_id := fl_p_id(p, 'guest_id', '', false);
    IF (v_guest IS NULL) = (v_guest_id IS NULL) THEN
        PERFORM fl_fail('invalid_params',
                        'give either guest (a new profile) or guest_id (a known profile)');
    END IF;
    v_arrival := coalesce(fl_p_date(p, 'arrival', '', false), prop.business_date);
    IF v_arrival <> prop.business_date THEN
        PERFORM fl_fail('invalid_params', format('arrival must be the business date %s',
                                                 prop.business_date));
    END IF;
    v_departure := fl_p_date(p, 'departure', '', true);
    IF v_departure <= v_arrival THEN
        PERFORM fl_fail('invalid_params', format('departure must be after the arrival %s',
                                                 v_arrival));
    END IF;
    s.adults := coalesce(fl_p_int(p, 'adults', '', false, 1, 20), 1);
    s.children := coalesce(fl_p_int(p, 'children', '', false, 0, 20), 0);
    s.rate := coalesce(fl_p_amount(p, 'rate', '', false, 0), 0);
    v_rate_code := coalesce(fl_p_code(p, 'rate_code', '', false), 'ROOM');
    SELECT * INTO rc FROM trx_codes WHERE property_id = prop.id AND code = v_rate_code;
    IF NOT FOUND THEN
        PERFORM fl_fail('not_found', format('transaction code %s does not exist in property %s',
                                            v_rate_code, prop.code));
    END IF;
    IF rc.kind <> 'charge' OR NOT rc.enabled THEN
        PERFORM fl_fail('invalid_params', format('rate_code: %s is not an enabled charge code',
                                                 v_rate_code));
    END IF;
    IF p ? 'credit_limit' AND jsonb_typeof(p -> 'credit_limit') <> 'null' THEN
        v_credit := fl_p_amount(p, 'credit_limit', '', true, 0);
    ELSE
        dflt := prop.settings -> 'default_credit_limit';
        IF jsonb_typeof(dflt) = 'number' AND dflt::text ~ '^[0-9]{1,13}$' THEN
            v_credit := dflt::text::bigint;
        END IF;
    END IF;
    s.no_post := coalesce(fl_p_bool(p, 'no_post', '', false), false);
    v_group := fl_p_code(p, 'group', '', false);
    v_route := fl_p_bool(p, 'route_to_master', '', false);
    IF v_route IS NOT NULL AND v_group IS NULL THEN
        PERFORM fl_fail('invalid_params', 'route_to_master is for a group member (give group)');
    END IF;
    v_share := fl_p_id(p, 'share_with', '', false);
    s.notes := fl_p_text(p, 'notes', '', false, 1000);

    IF v_group IS NOT NULL THEN
        SELECT * INTO gr FROM groups WHERE property_id = prop.id AND code = v_group
           AND status = 'open' FOR SHARE;
        IF NOT FOUND THEN
            PERFORM fl_fail('not_found', format('there is no open group %s in property %s',
                                                v_group, prop.code));
        END IF;
    END IF;
    IF v_guest_id IS NOT NULL THEN
        SELECT * INTO g FROM guests WHERE id = v_guest_id;
        IF NOT FOUND OR g.property_id <> prop.id THEN
            PERFORM fl_fail('not_found', format('guest %s does not exist in property %s',
                                                v_guest_id, prop.code));
        END IF;
    END IF;

    rm := fl_room_by_number(prop.id, v_room);
    IF rm.status = 'out_of_order' THEN
        PERFORM fl_fail('room_out_of_order', format('room %s is out of order', v_room));
    END IF;
    IF v_share IS NOT NULL THEN
        SELECT * INTO sharer FROM stays WHERE id = v_share AND property_id = prop.id;
        IF NOT FOUND OR sharer.status <> 'in_house' OR sharer.room_id <> rm.id THEN
            PERFORM fl_fail('invalid_params',
                            format('share_with: stay %s is not in house in room %s', v_share,
                                   v_room));
        END IF;
    ELSIF cardinality(fl_room_others(rm.id, NULL)) > 0 THEN
        PERFORM fl_fail('room_not_vacant',
                        format('room %s is occupied by stay %s (give share_with to share it)',
                               v_room, (fl_room_others(rm.id, NULL))[1]));
    END IF;
    IF v_guest_id IS NULL THEN
        g := fl_guest_save(ctx, prop.id, NULL::guests, v_guest, 'guest.');
    END IF;

    INSERT INTO stays (property_id, guest_id, room_id, group_id, share_with, arrival, departure,
                       adults, children, rate, rate_code_id, credit_limit, no_post, notes,
                       checked_in_by, created_by, updated_by)
    VALUES (prop.id, g.id, rm.id, gr.id, v_share, v_arrival, v_departure, s.adults, s.children,
            s.rate, rc.id, v_credit, s.no_post, s.notes, fl_actor(ctx), fl_actor(ctx),
            fl_actor(ctx))
    RETURNING * INTO s;
    f := fl_window_open(ctx, s, 1);
    IF v_share IS NULL THEN
        PERFORM fl_room_set_status(ctx, rm.id, 'occupied_clean');
    ELSIF rm.status LIKE 'vacant_%' THEN
        PERFORM fl_room_set_status(ctx, rm.id, replace(rm.status, 'vacant', 'occupied'));
    END IF;
    PERFORM fl_log(ctx, prop.id, 'stay', s.id, 'check_in', to_jsonb(s));

    -- a group member's room (and the city tax, when the property has one) go to the master
    IF gr.id IS NOT NULL AND coalesce(v_route, true) THEN
        SELECT * INTO master FROM folios WHERE id = gr.master_folio_id;
        IF master.status = 'open' THEN
            FOR ct IN SELECT * FROM trx_codes c
                       WHERE c.property_id = prop.id
                         AND (c.id = rc.id
                              OR (c.code = prop.settings -> 'city_tax' ->> 'code'
                                  AND c.kind IN ('charge', 'tax')))
                       ORDER BY c.id LOOP
                INSERT INTO routing_rules (property_id, stay_id, code_id, to_folio_id, target,
                                           created_by, updated_by)
                VALUES (prop.id, s.id, ct.id, master.id, 'master', fl_actor(ctx), fl_actor(ctx))
                RETURNING * INTO rr;
                PERFORM fl_log(ctx, prop.id, 'routing', rr.id, 'create', fl_routing_json(rr));
            END LOOP;
        END IF;
    END IF;
    RETURN fl_stay_json(s);
END
$$;

CREATE FUNCTION api_stay_get(ctx jsonb, p jsonb) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
BEGIN
    p := fl_params(p);
    PERFORM fl_check_keys(p, ARRAY['stay_id'], '');
    RETURN fl_stay_json(fl_stay_find(ctx, fl_p_id(p, 'stay_id', '', true)), true);
END
$$;

CREATE FUNCTION api_stay_list(ctx jsonb, p jsonb) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_prop bigint;
    v_view text;
    v_date date;
BEGIN
    p := fl_params(p);
    PERFORM fl_check_keys(p, ARRAY['property', 'view', 'date'], '');
    v_prop := fl_property_filter(ctx, p);
    v_view := coalesce(fl_p_enum(p, 'view', '', false,
                                 ARRAY['in_house', 'arrivals', 'due_out', 'checked_out']),
                       'in_house');
    v_date := fl_p_date(p, 'date', '', false);
    RETURN jsonb_build_object('view', v_view, 'items', coalesce(
        (SELECT jsonb_agg(fl_stay_json(s) ORDER BY pr.code, length(r.number), r.number, s.id)
           FROM stays s JOIN properties pr ON pr.id = s.property_id
           JOIN rooms r ON r.id = s.room_id
          WHERE (v_prop IS NULL OR s.property_id = v_prop)
            AND CASE v_view
                WHEN 'in_house' THEN s.status = 'in_house'
                WHEN 'arrivals' THEN s.arrival = coalesce(v_date, pr.business_date)
                WHEN 'due_out' THEN s.status = 'in_house'
                    AND s.departure <= coalesce(v_date, pr.business_date)
                ELSE s.status = 'checked_out'
                    AND s.checkout_date = coalesce(v_date, pr.business_date)
                END),
        '[]'::jsonb));
END
$$;

CREATE FUNCTION api_stay_update(ctx jsonb, p jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    s stays;
    n stays;
    g guests;
    rc trx_codes;
    v_code text;
    open_date date;
BEGIN
    p := fl_params(p);
    PERFORM fl_check_keys(p, ARRAY['stay_id', 'departure', 'rate', 'rate_code', 'credit_limit',
                                   'no_post', 'adults', 'children', 'notes', 'guest'], '');
    s := fl_stay_find(ctx, fl_p_id(p, 'stay_id', '', true), true);
    PERFORM fl_stay_in_house(s);
    SELECT business_date INTO open_date FROM properties WHERE id = s.property_id;
    n := s;
    IF p ? 'departure' THEN
        n.departure := fl_p_date(p, 'departure', '', true);
        IF n.departure <= s.arrival OR n.departure < open_date THEN
            PERFORM fl_fail('invalid_params',
                            format('departure must be after the arrival %s and not before the '
                                   'business date %s', s.arrival, open_date));
        END IF;
    END IF;
    IF p ? 'rate' THEN
        n.rate := fl_p_amount(p, 'rate', '', true, 0);
    END IF;
    IF p ? 'rate_code' THEN
        v_code := fl_p_code(p, 'rate_code', '', true);
        SELECT * INTO rc FROM trx_codes WHERE property_id = s.property_id AND code = v_code;
        IF NOT FOUND THEN
            PERFORM fl_fail('not_found', format('transaction code %s does not exist', v_code));
        END IF;
        IF rc.kind <> 'charge' OR NOT rc.enabled THEN
            PERFORM fl_fail('invalid_params', format('rate_code: %s is not an enabled charge code',
                                                     v_code));
        END IF;
        n.rate_code_id := rc.id;
    END IF;
    IF p ? 'credit_limit' THEN
        n.credit_limit := fl_p_amount(p, 'credit_limit', '', false, 0);
    END IF;
    IF p ? 'no_post' THEN
        n.no_post := fl_p_bool(p, 'no_post', '', true);
    END IF;
    IF p ? 'adults' THEN
        n.adults := fl_p_int(p, 'adults', '', true, 1, 20);
    END IF;
    IF p ? 'children' THEN
        n.children := fl_p_int(p, 'children', '', true, 0, 20);
    END IF;
    IF p ? 'notes' THEN
        n.notes := fl_p_text(p, 'notes', '', false, 1000);
    END IF;
    IF p ? 'guest' THEN
        SELECT * INTO g FROM guests WHERE id = s.guest_id FOR UPDATE;
        PERFORM fl_guest_save(ctx, s.property_id, g, fl_p_object(p, 'guest', '', true), 'guest.');
    END IF;
    IF n IS DISTINCT FROM s THEN
        UPDATE stays SET departure = n.departure, rate = n.rate, rate_code_id = n.rate_code_id,
                         credit_limit = n.credit_limit, no_post = n.no_post, adults = n.adults,
                         children = n.children, notes = n.notes, updated_at = now(),
                         updated_by = fl_actor(ctx)
         WHERE id = s.id RETURNING * INTO n;
        PERFORM fl_log(ctx, s.property_id, 'stay', s.id, 'update',
                       fl_diff(to_jsonb(s), to_jsonb(n)));
    END IF;
    RETURN fl_stay_json(n);
END
$$;

CREATE FUNCTION api_stay_move(ctx jsonb, p jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    s stays;
    n stays;
    old_room rooms;
    new_room rooms;
    v_number text;
BEGIN
    p := fl_params(p);
    PERFORM fl_check_keys(p, ARRAY['stay_id', 'room'], '');
    s := fl_stay_find(ctx, fl_p_id(p, 'stay_id', '', true), true);
    v_number := fl_p_room_number(p, 'room', '', true);
    PERFORM fl_stay_in_house(s);
    SELECT * INTO new_room FROM rooms WHERE property_id = s.property_id AND number = v_number;
    IF NOT FOUND THEN
        PERFORM fl_fail('not_found', format('room %s does not exist', v_number));
    END IF;
    IF new_room.id = s.room_id THEN
        PERFORM fl_fail('invalid_params', format('stay %s is already in room %s', s.number,
                                                 v_number));
    END IF;
    -- both rooms locked in id order, so two moves never deadlock
    PERFORM 1 FROM rooms WHERE id IN (s.room_id, new_room.id) ORDER BY id FOR UPDATE;
    SELECT * INTO old_room FROM rooms WHERE id = s.room_id;
    SELECT * INTO new_room FROM rooms WHERE id = new_room.id;
    IF new_room.status = 'out_of_order' THEN
        PERFORM fl_fail('room_out_of_order', format('room %s is out of order', v_number));
    END IF;
    IF cardinality(fl_room_others(new_room.id, s.id)) > 0 THEN
        PERFORM fl_fail('room_not_vacant', format('room %s is occupied', v_number));
    END IF;
    UPDATE stays SET room_id = new_room.id, share_with = NULL, updated_at = now(),
                     updated_by = fl_actor(ctx)
     WHERE id = s.id RETURNING * INTO n;
    IF cardinality(fl_room_others(old_room.id, s.id)) = 0 THEN
        PERFORM fl_room_set_status(ctx, old_room.id, 'vacant_dirty');
    END IF;
    PERFORM fl_room_set_status(ctx, new_room.id, 'occupied_clean');
    PERFORM fl_log(ctx, s.property_id, 'stay', s.id, 'move',
                   jsonb_build_object('room', jsonb_build_object('from', old_room.number,
                                                                 'to', new_room.number)));
    RETURN fl_stay_json(n);
END
$$;

CREATE FUNCTION api_stay_check_out(ctx jsonb, p jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    s stays;
    paid jsonb;
    open_windows jsonb;
BEGIN
    p := fl_params(p);
    PERFORM fl_check_keys(p, ARRAY['stay_id', 'payments'], '');
    s := fl_stay_find(ctx, fl_p_id(p, 'stay_id', '', true), true);
    PERFORM fl_stay_in_house(s);
    paid := fl_post_payments(ctx, s.property_id, s.id, NULL,
                             fl_p_array(p, 'payments', '', false));
    open_windows := fl_stay_open_balances(s.id);
    IF jsonb_array_length(open_windows) > 0 THEN
        PERFORM fl_fail_data('balance_not_zero',
                             format('stay %s cannot check out: %s window(s) not settled (%s)',
                                    s.number, jsonb_array_length(open_windows),
                                    (SELECT string_agg(format('window %s: %s', w ->> 'window',
                                                              w ->> 'balance'), ', ')
                                       FROM jsonb_array_elements(open_windows) AS w)),
                             jsonb_build_object('windows', open_windows));
    END IF;
    s := fl_stay_check_out_do(ctx, s);
    RETURN fl_stay_json(s) || jsonb_build_object('payments', paid);
END
$$;

CREATE FUNCTION api_stay_reinstate(ctx jsonb, p jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    s stays;
    n stays;
    rm rooms;
    f folios;
    open_date date;
    others bigint[];
BEGIN
    p := fl_params(p);
    PERFORM fl_check_keys(p, ARRAY['stay_id'], '');
    PERFORM fl_require_role(ctx, 'stay.reinstate', 'manager');
    s := fl_stay_find(ctx, fl_p_id(p, 'stay_id', '', true), true);
    SELECT business_date INTO open_date FROM properties WHERE id = s.property_id;
    IF s.status <> 'checked_out' THEN
        PERFORM fl_fail('reinstate_not_allowed', format('stay %s is in house', s.number));
    END IF;
    IF s.checkout_date <> open_date THEN
        PERFORM fl_fail('reinstate_not_allowed',
                        format('stay %s checked out on business date %s; only a checkout of the '
                               'open business date %s can be undone', s.number, s.checkout_date,
                               open_date));
    END IF;
    IF s.group_id IS NOT NULL
       AND EXISTS (SELECT 1 FROM groups g WHERE g.id = s.group_id AND g.status = 'closed') THEN
        PERFORM fl_fail('reinstate_not_allowed', 'the stay''s group is closed');
    END IF;
    SELECT * INTO rm FROM rooms WHERE id = s.room_id FOR UPDATE;
    IF rm.status = 'out_of_order' THEN
        PERFORM fl_fail('room_out_of_order', format('room %s is out of order', rm.number));
    END IF;
    -- the room must be free, except for stays that shared it with this one
    SELECT coalesce(array_agg(o.id), '{}') INTO others FROM stays o
     WHERE o.room_id = s.room_id AND o.status = 'in_house' AND o.id <> s.id
       AND o.share_with IS DISTINCT FROM s.id AND s.share_with IS DISTINCT FROM o.id;
    IF cardinality(others) > 0 THEN
        PERFORM fl_fail('room_not_vacant', format('room %s is occupied by stay %s', rm.number,
                                                  others[1]));
    END IF;
    -- window 1, and the windows the stay's routing rules send charges to
    FOR f IN SELECT * FROM folios w
              WHERE w.stay_id = s.id AND w.status = 'closed'
                AND (w.window_no = 1
                     OR EXISTS (SELECT 1 FROM routing_rules rr
                                 WHERE rr.stay_id = s.id AND rr.active AND rr.to_folio_id = w.id))
              ORDER BY w.id FOR NO KEY UPDATE LOOP
        PERFORM fl_folio_reopen_do(ctx, f, 'stay reinstated');
    END LOOP;
    UPDATE stays SET status = 'in_house', checked_out_at = NULL, checked_out_by = NULL,
                     checkout_date = NULL, updated_at = now(), updated_by = fl_actor(ctx)
     WHERE id = s.id RETURNING * INTO n;
    IF rm.status LIKE 'vacant_%' THEN
        PERFORM fl_room_set_status(ctx, rm.id, replace(rm.status, 'vacant', 'occupied'));
    END IF;
    PERFORM fl_log(ctx, s.property_id, 'stay', s.id, 'reinstate',
                   jsonb_build_object('number', s.number, 'checked_out_at', s.checked_out_at,
                                      'checked_out_by', s.checked_out_by));
    RETURN fl_stay_json(n);
END
$$;

-- ---------------------------------------------------------------------------------------------
-- Groups
-- ---------------------------------------------------------------------------------------------

CREATE FUNCTION api_group_create(ctx jsonb, p jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    prop properties;
    gr groups;
    f folios;
BEGIN
    p := fl_params(p);
    PERFORM fl_check_keys(p, ARRAY['property', 'code', 'name', 'arrival', 'departure',
                                   'credit_limit'], '');
    prop := fl_property_scope(ctx, p);
    gr.code := fl_p_code(p, 'code', '', true);
    gr.name := fl_p_text(p, 'name', '', true, 200);
    gr.arrival := coalesce(fl_p_date(p, 'arrival', '', false), prop.business_date);
    gr.departure := fl_p_date(p, 'departure', '', true);
    gr.credit_limit := fl_p_amount(p, 'credit_limit', '', false, 0);
    IF gr.arrival < prop.business_date THEN
        PERFORM fl_fail('invalid_params', format('arrival must not be before the business date %s',
                                                 prop.business_date));
    END IF;
    IF gr.departure <= gr.arrival THEN
        PERFORM fl_fail('invalid_params', 'departure must be after the arrival');
    END IF;
    BEGIN
        INSERT INTO groups (property_id, code, name, arrival, departure, credit_limit,
                            created_by, updated_by)
        VALUES (prop.id, gr.code, gr.name, gr.arrival, gr.departure, gr.credit_limit,
                fl_actor(ctx), fl_actor(ctx))
        RETURNING * INTO gr;
    EXCEPTION WHEN unique_violation THEN
        PERFORM fl_fail('conflict', format('an open group %s already exists in property %s',
                                           gr.code, prop.code));
    END;
    INSERT INTO folios (property_id, type, group_id, name, created_by, updated_by)
    VALUES (prop.id, 'master', gr.id, gr.name, fl_actor(ctx), fl_actor(ctx))
    RETURNING * INTO f;
    UPDATE groups SET master_folio_id = f.id WHERE id = gr.id RETURNING * INTO gr;
    PERFORM fl_log(ctx, prop.id, 'group', gr.id, 'create', to_jsonb(gr));
    PERFORM fl_log(ctx, prop.id, 'folio', f.id, 'create', fl_folio_json(f));
    RETURN fl_group_json(gr);
END
$$;

CREATE FUNCTION fl_group_find(ctx jsonb, p jsonb, v_lock boolean) RETURNS groups
LANGUAGE plpgsql AS $$
DECLARE
    v_id bigint := fl_p_id(p, 'group_id', '', false);
    v_code text := fl_p_code(p, 'code', '', false);
    prop properties;
    gr groups;
BEGIN
    IF (v_id IS NULL) = (v_code IS NULL) THEN
        PERFORM fl_fail('invalid_params', 'give group_id or code');
    END IF;
    IF v_id IS NULL THEN
        prop := fl_property_scope(ctx, p);
        SELECT id INTO v_id FROM groups WHERE property_id = prop.id AND code = v_code
         ORDER BY status = 'open' DESC, id DESC LIMIT 1;
        IF NOT FOUND THEN
            PERFORM fl_fail('not_found', format('group %s does not exist in property %s', v_code,
                                                prop.code));
        END IF;
    END IF;
    IF v_lock THEN
        PERFORM 1 FROM properties WHERE id = (SELECT x.property_id FROM groups x WHERE x.id = v_id)
            FOR SHARE;
        SELECT * INTO gr FROM groups WHERE id = v_id FOR UPDATE;
    ELSE
        SELECT * INTO gr FROM groups WHERE id = v_id;
    END IF;
    IF NOT FOUND THEN
        PERFORM fl_fail('not_found', format('group %s does not exist', v_id));
    END IF;
    PERFORM fl_scope_check(ctx, gr.property_id, format('group %s', gr.code));
    RETURN gr;
END
$$;

CREATE FUNCTION api_group_get(ctx jsonb, p jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
BEGIN
    p := fl_params(p);
    PERFORM fl_check_keys(p, ARRAY['property', 'group_id', 'code'], '');
    RETURN fl_group_json(fl_group_find(ctx, p, false), true);
END
$$;

CREATE FUNCTION api_group_check_out(ctx jsonb, p jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    gr groups;
    m folios;
    s stays;
    paid jsonb;
    done jsonb := '[]';
    left_over jsonb := '[]';
BEGIN
    p := fl_params(p);
    PERFORM fl_check_keys(p, ARRAY['group_id', 'payments'], '');
    IF NOT p ? 'group_id' THEN
        PERFORM fl_p_id(p, 'group_id', '', true);
    END IF;
    gr := fl_group_find(ctx, p, true);
    IF gr.status <> 'open' THEN
        PERFORM fl_fail('group_closed', format('group %s is closed', gr.code));
    END IF;
    paid := fl_post_payments(ctx, gr.property_id, NULL, gr.master_folio_id,
                             fl_p_array(p, 'payments', '', false));
    SELECT * INTO m FROM folios WHERE id = gr.master_folio_id FOR NO KEY UPDATE;
    IF m.balance <> 0 THEN
        PERFORM fl_fail_data('balance_not_zero',
                             format('the master folio %s of group %s has a balance of %s',
                                    m.number, gr.code, m.balance),
                             jsonb_build_object('folio_id', m.id, 'balance', m.balance));
    END IF;
    FOR s IN SELECT * FROM stays WHERE group_id = gr.id AND status = 'in_house' ORDER BY id
               FOR NO KEY UPDATE LOOP
        IF EXISTS (SELECT 1 FROM folios f WHERE f.stay_id = s.id AND f.balance <> 0) THEN
            left_over := left_over || jsonb_build_object(
                'stay_id', s.id, 'number', s.number,
                'room', (SELECT r.number FROM rooms r WHERE r.id = s.room_id),
                'balance', (SELECT sum(f.balance) FROM folios f WHERE f.stay_id = s.id),
                'windows', fl_stay_open_balances(s.id));
        ELSE
            PERFORM fl_stay_check_out_do(ctx, s);
            done := done || to_jsonb(s.id);
        END IF;
    END LOOP;
    IF jsonb_array_length(left_over) = 0 THEN
        m := fl_folio_close_do(ctx, m);
        UPDATE groups SET status = 'closed', closed_at = now(), closed_by = fl_actor(ctx),
                          updated_at = now(), updated_by = fl_actor(ctx)
         WHERE id = gr.id RETURNING * INTO gr;
        PERFORM fl_log(ctx, gr.property_id, 'group', gr.id, 'close',
                       jsonb_build_object('code', gr.code));
    END IF;
    SELECT * INTO m FROM folios WHERE id = gr.master_folio_id;
    RETURN jsonb_build_object('checked_out', done, 'not_checked_out', left_over,
                              'master', fl_folio_brief(m), 'payments', paid,
                              'group', fl_group_json(gr));
END
$$;

-- ---------------------------------------------------------------------------------------------
-- Folios
-- ---------------------------------------------------------------------------------------------

CREATE FUNCTION api_folio_open(ctx jsonb, p jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    prop properties;
    v_type text;
    v_name text;
    v_stay bigint;
    s stays;
    f folios;
BEGIN
    p := fl_params(p);
    PERFORM fl_check_keys(p, ARRAY['property', 'type', 'name', 'stay_id'], '');
    v_type := fl_p_enum(p, 'type', '', true, ARRAY['individual', 'non_guest', 'employee',
                                                   'control', 'semi_permanent', 'permanent',
                                                   'master']);
    v_name := fl_p_text(p, 'name', '', false, 200);
    v_stay := fl_p_id(p, 'stay_id', '', false);
    IF v_type = 'master' THEN
        PERFORM fl_fail('invalid_params', 'a master folio is opened by group.create');
    END IF;
    IF v_type = 'individual' THEN
        IF v_stay IS NULL THEN
            PERFORM fl_fail('invalid_params', 'stay_id is required for an individual folio');
        END IF;
        s := fl_stay_find(ctx, v_stay, true);
        IF p ? 'property' THEN
            prop := fl_property_scope(ctx, p);
            IF prop.id <> s.property_id THEN
                PERFORM fl_fail('invalid_params', 'the stay belongs to another property');
            END IF;
        END IF;
        PERFORM fl_stay_in_house(s);
        f := fl_window_open(ctx, s, NULL, v_name);
        RETURN fl_folio_json(f);
    END IF;
    IF v_stay IS NOT NULL THEN
        PERFORM fl_fail('invalid_params', 'stay_id is only for an individual folio');
    END IF;
    IF v_type IN ('control', 'semi_permanent', 'permanent') THEN
        PERFORM fl_require_role(ctx, 'opening a ' || replace(v_type, '_', '-') || ' folio',
                                'manager');
    END IF;
    IF v_name IS NULL THEN
        PERFORM fl_fail('invalid_params', 'name is required');
    END IF;
    prop := fl_property_scope(ctx, p);
    INSERT INTO folios (property_id, type, name, created_by, updated_by)
    VALUES (prop.id, v_type, v_name, fl_actor(ctx), fl_actor(ctx))
    RETURNING * INTO f;
    PERFORM fl_log(ctx, prop.id, 'folio', f.id, 'create', fl_folio_json(f));
    RETURN fl_folio_json(f);
END
$$;

-- The postings of a folio, oldest first, each with the void that cancels it and the transfer
-- that moved it (if any).
CREATE FUNCTION fl_folio_postings_json(v_folio_id bigint) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT coalesce(jsonb_agg(fl_posting_json(p, c) || jsonb_build_object(
                        'voided_by', (SELECT v.id FROM postings v WHERE v.void_of = p.id),
                        'transferred_by', (SELECT t.transfer_id FROM postings t
                                            WHERE t.transfer_of = p.id
                                              AND t.type = 'transfer_out'))
                    ORDER BY p.id), '[]'::jsonb)
      FROM postings p JOIN trx_codes c ON c.id = p.trx_code_id
     WHERE p.folio_id = v_folio_id
$$;

CREATE FUNCTION api_folio_get(ctx jsonb, p jsonb) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
    f folios;
BEGIN
    p := fl_params(p);
    PERFORM fl_check_keys(p, ARRAY['folio_id'], '');
    f := fl_folio_find(ctx, fl_p_id(p, 'folio_id', '', true));
    RETURN fl_folio_json(f) || jsonb_build_object(
        'postings', fl_folio_postings_json(f.id),
        'totals', (SELECT jsonb_build_object(
                              'charges', coalesce(sum(x.amount) FILTER (WHERE x.amount > 0), 0),
                              'credits', coalesce(sum(x.amount) FILTER (WHERE x.amount < 0), 0),
                              'postings', count(*))
                     FROM postings x WHERE x.folio_id = f.id));
END
$$;

CREATE FUNCTION api_folio_list(ctx jsonb, p jsonb) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_prop bigint;
    v_type text;
    v_status text;
    v_stay bigint;
BEGIN
    p := fl_params(p);
    PERFORM fl_check_keys(p, ARRAY['property', 'type', 'status', 'stay_id'], '');
    v_prop := fl_property_filter(ctx, p);
    v_type := fl_p_enum(p, 'type', '', false, ARRAY['individual', 'master', 'non_guest',
                                                    'employee', 'control', 'semi_permanent',
                                                    'permanent']);
    v_status := fl_p_enum(p, 'status', '', false, ARRAY['open', 'closed']);
    v_stay := fl_p_id(p, 'stay_id', '', false);
    IF v_stay IS NOT NULL THEN
        PERFORM fl_stay_find(ctx, v_stay);
    END IF;
    RETURN jsonb_build_object('items', coalesce(
        (SELECT jsonb_agg(fl_folio_json(f) ORDER BY f.id)
           FROM folios f
          WHERE (v_prop IS NULL OR f.property_id = v_prop)
            AND (v_type IS NULL OR f.type = v_type)
            AND (v_status IS NULL OR f.status = v_status)
            AND (v_stay IS NULL OR f.stay_id = v_stay)),
        '[]'::jsonb));
END
$$;

CREATE FUNCTION api_folio_close(ctx jsonb, p jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    f folios;
BEGIN
    p := fl_params(p);
    PERFORM fl_check_keys(p, ARRAY['folio_id'], '');
    f := fl_folio_find(ctx, fl_p_id(p, 'folio_id', '', true), true);
    IF f.status = 'closed' THEN
        PERFORM fl_fail('folio_closed', format('folio %s is already closed', f.number));
    END IF;
    IF f.type = 'permanent' THEN
        PERFORM fl_fail('permanent_folio', format('folio %s is a permanent house account and '
                                                  'never closes', f.number));
    END IF;
    IF f.window_no = 1 AND EXISTS (SELECT 1 FROM stays s WHERE s.id = f.stay_id
                                                          AND s.status = 'in_house') THEN
        PERFORM fl_fail('use_check_out', format('folio %s is window 1 of an in-house stay: it '
                                                'closes at checkout', f.number));
    END IF;
    IF f.type = 'master' AND EXISTS (SELECT 1 FROM groups g WHERE g.id = f.group_id
                                                              AND g.status = 'open') THEN
        PERFORM fl_fail('use_check_out', format('folio %s is the master of an open group: it '
                                                'closes at group checkout', f.number));
    END IF;
    IF f.balance <> 0 THEN
        PERFORM fl_fail_data('balance_not_zero',
                             format('folio %s has a balance of %s', f.number, f.balance),
                             jsonb_build_object('folio_id', f.id, 'balance', f.balance));
    END IF;
    RETURN fl_folio_json(fl_folio_close_do(ctx, f));
END
$$;

CREATE FUNCTION api_folio_reopen(ctx jsonb, p jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    f folios;
BEGIN
    p := fl_params(p);
    PERFORM fl_check_keys(p, ARRAY['folio_id'], '');
    PERFORM fl_require_role(ctx, 'folio.reopen', 'manager');
    f := fl_folio_find(ctx, fl_p_id(p, 'folio_id', '', true), true);
    IF f.status = 'open' THEN
        PERFORM fl_fail('reopen_not_allowed', format('folio %s is open', f.number));
    END IF;
    IF NOT (f.type IN ('non_guest', 'employee', 'control', 'semi_permanent')
            OR (f.type = 'individual' AND f.window_no > 1
                AND EXISTS (SELECT 1 FROM stays s WHERE s.id = f.stay_id
                                                    AND s.status = 'in_house'))) THEN
        PERFORM fl_fail('reopen_not_allowed',
                        format('folio %s cannot be reopened: %s', f.number,
                               CASE WHEN f.type = 'master' THEN 'its group is closed'
                                    WHEN f.window_no = 1 OR f.stay_id IS NOT NULL
                                    THEN 'use stay.reinstate, or post a late charge (manager)'
                                    ELSE 'not reopenable' END));
    END IF;
    RETURN fl_folio_json(fl_folio_reopen_do(ctx, f, 'folio.reopen'));
END
$$;

-- ---------------------------------------------------------------------------------------------
-- Posting methods
-- ---------------------------------------------------------------------------------------------

CREATE FUNCTION api_folio_post(ctx jsonb, p jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    f folios;
    c trx_codes;
    v_code text;
    v_amount bigint;
    v_quantity integer;
BEGIN
    p := fl_params(p);
    PERFORM fl_check_keys(p, ARRAY['folio_id', 'stay_id', 'window', 'code', 'amount', 'quantity',
                                   'description', 'reference'], '');
    f := fl_p_folio_target(ctx, p);
    v_code := fl_p_code(p, 'code', '', true);
    v_amount := fl_p_amount(p, 'amount', '', true);
    v_quantity := coalesce(fl_p_int(p, 'quantity', '', false, 1, 999), 1);
    IF v_amount = 0 THEN
        PERFORM fl_fail('invalid_params', 'amount must not be zero');
    END IF;
    IF abs(v_amount * v_quantity) > 1000000000000 THEN
        PERFORM fl_fail('invalid_params', 'amount x quantity must be between -10^12 and 10^12');
    END IF;
    SELECT * INTO c FROM trx_codes WHERE property_id = f.property_id AND code = v_code;
    IF NOT FOUND THEN
        PERFORM fl_fail('not_found', format('transaction code %s does not exist', v_code));
    END IF;
    IF c.kind <> 'charge' OR NOT c.enabled THEN
        PERFORM fl_fail('invalid_code', format('%s is not an enabled charge code (it is a%s %s '
                                               'code)', v_code,
                                               CASE WHEN c.enabled THEN '' ELSE ' disabled' END,
                                               c.kind));
    END IF;
    IF v_amount < 0 THEN
        PERFORM fl_require_role(ctx, 'an allowance (a negative amount)', 'manager');
    END IF;
    -- the folio addressed must be open, even when routing sends the charge elsewhere; a
    -- manager's late charge on a checked-out stay reopens it
    PERFORM fl_folio_for_posting(ctx, f.id, fl_ctx_is(ctx, 'manager'));
    RETURN fl_post_charge(ctx, f.id, c.id, v_amount, v_quantity,
                          fl_p_text(p, 'description', '', false, 200),
                          fl_p_text(p, 'reference', '', false, 64), NULL, true);
END
$$;

CREATE FUNCTION api_folio_pay(ctx jsonb, p jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    f folios;
    c trx_codes;
    v_amount bigint;
BEGIN
    p := fl_params(p);
    PERFORM fl_check_keys(p, ARRAY['folio_id', 'stay_id', 'window', 'method', 'code', 'amount',
                                   'description', 'reference'], '');
    f := fl_p_folio_target(ctx, p);
    c := fl_p_payment_code(f.property_id, p, '');
    v_amount := fl_p_amount(p, 'amount', '', true);
    IF v_amount = 0 THEN
        PERFORM fl_fail('invalid_params', 'amount must not be zero');
    END IF;
    PERFORM fl_folio_for_posting(ctx, f.id, fl_ctx_is(ctx, 'manager'));
    RETURN fl_post_payment(ctx, f.id, c.id, v_amount, fl_p_text(p, 'description', '', false, 200),
                           fl_p_text(p, 'reference', '', false, 64));
END
$$;

CREATE FUNCTION api_folio_void(ctx jsonb, p jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
BEGIN
    p := fl_params(p);
    PERFORM fl_check_keys(p, ARRAY['posting_id', 'reason'], '');
    RETURN fl_void_posting(ctx, fl_p_id(p, 'posting_id', '', true),
                           fl_p_text(p, 'reason', '', false, 200));
END
$$;

CREATE FUNCTION api_folio_adjust(ctx jsonb, p jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
BEGIN
    p := fl_params(p);
    PERFORM fl_check_keys(p, ARRAY['posting_id', 'amount', 'reason'], '');
    PERFORM fl_require_role(ctx, 'folio.adjust', 'manager');
    RETURN fl_adjust_posting(ctx, fl_p_id(p, 'posting_id', '', true),
                             fl_p_amount(p, 'amount', '', false, 1),
                             fl_p_text(p, 'reason', '', true, 200));
END
$$;

CREATE FUNCTION api_folio_transfer(ctx jsonb, p jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    ids bigint[] := '{}';
    e jsonb;
    i integer := 0;
    v_to bigint;
    v_window integer;
    src postings;
    f folios;
    s stays;
    t folios;
BEGIN
    p := fl_params(p);
    PERFORM fl_check_keys(p, ARRAY['posting_ids', 'to_folio_id', 'to_window', 'reason'], '');
    FOR e IN SELECT value FROM jsonb_array_elements(fl_p_array(p, 'posting_ids', '', true)) LOOP
        ids := ids || fl_p_id(jsonb_build_object(format('posting_ids[%s]', i), e),
                              format('posting_ids[%s]', i), '', true);
        i := i + 1;
        IF i > 500 THEN
            PERFORM fl_fail('invalid_params', 'posting_ids: at most 500 postings');
        END IF;
    END LOOP;
    IF cardinality(ids) = 0 THEN
        PERFORM fl_fail('invalid_params', 'posting_ids must name at least one posting');
    END IF;
    v_to := fl_p_id(p, 'to_folio_id', '', false);
    v_window := fl_p_int(p, 'to_window', '', false, 1, 8);
    IF (v_to IS NULL) = (v_window IS NULL) THEN
        PERFORM fl_fail('invalid_params', 'give to_folio_id or to_window');
    END IF;
    IF v_window IS NOT NULL THEN
        src := fl_posting_find(ctx, ids[1]);
        f := fl_folio_find(ctx, src.folio_id);
        IF f.stay_id IS NULL THEN
            PERFORM fl_fail('invalid_params', format('to_window: folio %s is not a stay''s '
                                                     'folio', f.number));
        END IF;
        t := fl_stay_window(f.stay_id, v_window);
        IF t.id IS NULL THEN
            IF f.status <> 'open' THEN
                PERFORM fl_fail('folio_closed', format('folio %s (from) is closed', f.number));
            END IF;
            s := fl_stay_find(ctx, f.stay_id, true);
            PERFORM fl_stay_in_house(s);
            t := fl_window_open(ctx, s, v_window);
        END IF;
        v_to := t.id;
    END IF;
    RETURN fl_transfer_postings(ctx, ids, v_to, fl_p_text(p, 'reason', '', false, 200));
END
$$;

CREATE FUNCTION api_folio_transfer_balance(ctx jsonb, p jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
BEGIN
    p := fl_params(p);
    PERFORM fl_check_keys(p, ARRAY['from_folio_id', 'to_folio_id', 'amount', 'reason'], '');
    RETURN fl_transfer_balance(ctx, fl_p_id(p, 'from_folio_id', '', true),
                               fl_p_id(p, 'to_folio_id', '', true),
                               fl_p_amount(p, 'amount', '', false, 1),
                               fl_p_text(p, 'reason', '', false, 200));
END
$$;

-- ---------------------------------------------------------------------------------------------
-- Routing
-- ---------------------------------------------------------------------------------------------

CREATE FUNCTION api_routing_set(ctx jsonb, p jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    s stays;
    c trx_codes;
    t folios;
    w1 folios;
    rr routing_rules;
    old routing_rules;
    v_code text;
    v_dept text;
    v_to bigint;
    v_window integer;
    v_master boolean;
    v_target text;
BEGIN
    p := fl_params(p);
    PERFORM fl_check_keys(p, ARRAY['stay_id', 'code', 'department', 'to_folio_id', 'to_window',
                                   'to_master'], '');
    s := fl_stay_find(ctx, fl_p_id(p, 'stay_id', '', true), true);
    v_code := fl_p_code(p, 'code', '', false);
    v_dept := fl_p_match(p, 'department', '', false, '^[a-z][a-z0-9_]{0,31}$',
                         '1 to 32 lower-case letters, digits or "_" (e.g. "food")');
    v_to := fl_p_id(p, 'to_folio_id', '', false);
    v_window := fl_p_int(p, 'to_window', '', false, 1, 8);
    v_master := fl_p_bool(p, 'to_master', '', false);
    IF (v_code IS NULL) = (v_dept IS NULL) THEN
        PERFORM fl_fail('invalid_params', 'give code or department');
    END IF;
    IF v_master IS NOT NULL AND NOT v_master THEN
        PERFORM fl_fail('invalid_params', 'to_master must be true when given');
    END IF;
    IF (v_to IS NOT NULL)::int + (v_window IS NOT NULL)::int + (v_master IS NOT NULL)::int <> 1
    THEN
        PERFORM fl_fail('invalid_params', 'give one of to_folio_id, to_window, to_master');
    END IF;
    PERFORM fl_stay_in_house(s);
    IF v_code IS NOT NULL THEN
        SELECT * INTO c FROM trx_codes WHERE property_id = s.property_id AND code = v_code;
        IF NOT FOUND THEN
            PERFORM fl_fail('not_found', format('transaction code %s does not exist', v_code));
        END IF;
        IF c.kind NOT IN ('charge', 'tax') THEN
            PERFORM fl_fail('invalid_code', format('%s is a %s code: only charges are routed '
                                                   '(their taxes follow them)', v_code, c.kind));
        END IF;
    END IF;
    w1 := fl_stay_window(s.id, 1);
    IF v_window IS NOT NULL THEN
        v_target := 'window';
        IF v_window = 1 THEN
            PERFORM fl_fail('same_folio', 'routing goes from window 1 to another folio');
        END IF;
        t := fl_stay_window(s.id, v_window);
        IF t.id IS NULL THEN
            t := fl_window_open(ctx, s, v_window);
        END IF;
    ELSIF v_master THEN
        v_target := 'master';
        IF s.group_id IS NULL THEN
            PERFORM fl_fail('invalid_params', format('stay %s is not in a group', s.number));
        END IF;
        SELECT f.* INTO t FROM groups g JOIN folios f ON f.id = g.master_folio_id
         WHERE g.id = s.group_id;
    ELSE
        SELECT * INTO t FROM folios WHERE id = v_to;
        IF NOT FOUND THEN
            PERFORM fl_fail('not_found', format('folio %s does not exist', v_to));
        END IF;
        IF t.property_id <> s.property_id THEN
            PERFORM fl_fail('cross_property', format('folio %s belongs to another property',
                                                     t.number));
        END IF;
        IF t.id = w1.id THEN
            PERFORM fl_fail('same_folio', 'routing goes from window 1 to another folio');
        END IF;
        v_target := CASE WHEN t.stay_id = s.id THEN 'window'
                         WHEN t.type = 'master' AND t.group_id = s.group_id THEN 'master'
                         ELSE 'folio' END;
    END IF;
    IF t.status <> 'open' THEN
        PERFORM fl_fail('folio_closed', format('folio %s is closed', t.number));
    END IF;
    -- a new rule for the same code or department replaces the old one
    FOR old IN SELECT * FROM routing_rules
                WHERE stay_id = s.id AND active
                  AND (code_id = c.id OR department = v_dept) FOR UPDATE LOOP
        UPDATE routing_rules SET active = false, cleared_at = now(), cleared_by = fl_actor(ctx),
                                 updated_at = now(), updated_by = fl_actor(ctx)
         WHERE id = old.id;
        PERFORM fl_log(ctx, s.property_id, 'routing', old.id, 'clear',
                       jsonb_build_object('replaced', true));
    END LOOP;
    INSERT INTO routing_rules (property_id, stay_id, code_id, department, to_folio_id, target,
                               created_by, updated_by)
    VALUES (s.property_id, s.id, c.id, v_dept, t.id, v_target, fl_actor(ctx), fl_actor(ctx))
    RETURNING * INTO rr;
    PERFORM fl_log(ctx, s.property_id, 'routing', rr.id, 'create', fl_routing_json(rr));
    RETURN fl_routing_json(rr);
END
$$;

CREATE FUNCTION api_routing_clear(ctx jsonb, p jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    rr routing_rules;
    v_id bigint;
BEGIN
    p := fl_params(p);
    PERFORM fl_check_keys(p, ARRAY['routing_id'], '');
    v_id := fl_p_id(p, 'routing_id', '', true);
    SELECT * INTO rr FROM routing_rules WHERE id = v_id FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM fl_fail('not_found', format('routing rule %s does not exist', v_id));
    END IF;
    PERFORM fl_scope_check(ctx, rr.property_id, format('routing rule %s', v_id));
    IF rr.active THEN
        UPDATE routing_rules SET active = false, cleared_at = now(), cleared_by = fl_actor(ctx),
                                 updated_at = now(), updated_by = fl_actor(ctx)
         WHERE id = rr.id RETURNING * INTO rr;
        PERFORM fl_log(ctx, rr.property_id, 'routing', rr.id, 'clear', '{}');
    END IF;
    RETURN fl_routing_json(rr);
END
$$;

CREATE FUNCTION api_routing_list(ctx jsonb, p jsonb) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
    s stays;
BEGIN
    p := fl_params(p);
    PERFORM fl_check_keys(p, ARRAY['stay_id'], '');
    s := fl_stay_find(ctx, fl_p_id(p, 'stay_id', '', true));
    RETURN jsonb_build_object('items', coalesce(
        (SELECT jsonb_agg(fl_routing_json(rr) ORDER BY rr.id)
           FROM routing_rules rr WHERE rr.stay_id = s.id AND rr.active),
        '[]'::jsonb));
END
$$;

-- ---------------------------------------------------------------------------------------------
-- Business date
-- ---------------------------------------------------------------------------------------------

CREATE FUNCTION api_business_date_close(ctx jsonb, p jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    prop properties;
BEGIN
    p := fl_params(p);
    PERFORM fl_check_keys(p, ARRAY['property'], '');
    PERFORM fl_require_role(ctx, 'business_date.close', 'manager');
    prop := fl_property_scope(ctx, p);
    RETURN fl_close_business_date(prop.id, fl_actor(ctx));
END
$$;
