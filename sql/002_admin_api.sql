-- 002_admin_api.sql - the admin RPC methods on reference data and the daemon's identity lookups.
--
-- One function per method, api_<area>_<verb>(ctx jsonb, p jsonb) RETURNS jsonb:
--   property.create/update/list, room.create/update/list, trx_code.create/update/list,
--   outlet.create/update/list, user.create/update/list, server.info.
-- Lookups for the daemon: auth_user_lookup(username), auth_outlet_lookup(fingerprint, cn).
--
-- Each entity has one fl_<entity>_save(ctx, p, mode, path) that create, update and the bulk
-- import (003) share. mode is 'create' (conflict if the natural key exists), 'update' (not_found
-- if it does not; only the given members change) or 'upsert' (the import: create or update;
-- nested objects given are replaced whole). It returns {"action": "created" | "updated" |
-- "unchanged", "item": {...}}. An update that changes nothing writes nothing: no new updated_at,
-- no change log entry, which is what makes the import idempotent.
--
-- Applied once by the migrate command inside one transaction; never edited once landed.

-- ---------------------------------------------------------------------------------------------
-- JSON views of the rows
-- ---------------------------------------------------------------------------------------------

CREATE FUNCTION fl_property_json(r properties) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', r.id, 'code', r.code, 'name', r.name, 'currency', r.currency,
        'minor_units', r.minor_units, 'timezone', r.timezone, 'business_date', r.business_date,
        'audit_time', to_char(r.audit_time, 'HH24:MI'), 'settings', r.settings,
        'created_at', r.created_at, 'created_by', r.created_by,
        'updated_at', r.updated_at, 'updated_by', r.updated_by)
$$;

CREATE FUNCTION fl_room_json(r rooms) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', r.id, 'property', fl_property_code(r.property_id), 'property_id', r.property_id,
        'number', r.number, 'room_type', r.room_type, 'floor', r.floor, 'status', r.status,
        'created_at', r.created_at, 'created_by', r.created_by,
        'updated_at', r.updated_at, 'updated_by', r.updated_by)
$$;

CREATE FUNCTION fl_trx_rules_json(v_code_id bigint) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT coalesce(jsonb_agg(jsonb_build_object(
                        'seq', cr.seq, 'code', g.code, 'rate_ppm', cr.rate_ppm,
                        'inclusive', cr.inclusive, 'compound', cr.compound) ORDER BY cr.seq),
                    '[]'::jsonb)
      FROM trx_code_rules cr JOIN trx_codes g ON g.id = cr.generated_code_id
     WHERE cr.code_id = v_code_id
$$;

CREATE FUNCTION fl_trx_code_json(r trx_codes) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', r.id, 'property', fl_property_code(r.property_id), 'property_id', r.property_id,
        'code', r.code, 'description', r.description, 'department', r.department,
        'kind', r.kind, 'payment_method', r.payment_method, 'enabled', r.enabled,
        'rules', fl_trx_rules_json(r.id),
        'created_at', r.created_at, 'created_by', r.created_by,
        'updated_at', r.updated_at, 'updated_by', r.updated_by)
$$;

-- Every policy key with its default. A key missing from a stored policy means its default.
CREATE FUNCTION fl_outlet_policy_defaults() RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT '{"allowed_codes": [], "max_per_posting": null, "max_per_day": null,
             "credit_policy": "refuse", "inquiry_required": false,
             "name_match_required": false, "late_charge_hours": 0, "may_see_credit": false,
             "block_during_audit": false}'::jsonb
$$;

CREATE FUNCTION fl_outlet_json(r outlets) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', r.id, 'property', fl_property_code(r.property_id), 'property_id', r.property_id,
        'code', r.code, 'name', r.name, 'cert_cn', r.cert_cn,
        'cert_fingerprint', r.cert_fingerprint, 'enabled', r.enabled,
        'policy', fl_outlet_policy_defaults() || r.policy,
        'created_at', r.created_at, 'created_by', r.created_by,
        'updated_at', r.updated_at, 'updated_by', r.updated_by)
$$;

-- Never carries the password hash.
CREATE FUNCTION fl_user_json(r users) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', r.id, 'username', r.username, 'role', r.role,
        'property', fl_property_code(r.property_id), 'property_id', r.property_id,
        'full_name', r.full_name, 'enabled', r.enabled,
        'created_at', r.created_at, 'created_by', r.created_by,
        'updated_at', r.updated_at, 'updated_by', r.updated_by)
$$;

-- ---------------------------------------------------------------------------------------------
-- Properties
-- ---------------------------------------------------------------------------------------------

CREATE FUNCTION fl_p_timezone(p jsonb, k text, path text, required boolean) RETURNS text
LANGUAGE plpgsql STABLE AS $$
DECLARE
    tz text := fl_p_text(p, k, path, required, 64);
BEGIN
    IF tz IS NOT NULL AND NOT fl_valid_timezone(tz) THEN
        PERFORM fl_fail('invalid_params',
                        format('%s%s: "%s" is not a known time zone name (e.g. "Europe/Paris")',
                               path, k, tz));
    END IF;
    RETURN tz;
END
$$;

CREATE FUNCTION fl_property_save(ctx jsonb, p jsonb, mode text, path text DEFAULT '')
RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    o properties;
    n properties;
    v_code text;
    v_settings jsonb;
BEGIN
    p := fl_params(p, path);
    IF mode = 'update' THEN
        -- the natural key may be given as "code" or, like everywhere else, "property"
        PERFORM fl_check_keys(p, ARRAY['code', 'property', 'name', 'currency', 'minor_units',
                                       'timezone', 'business_date', 'audit_time', 'settings'],
                              path);
        IF p ? 'code' AND p ? 'property' AND (p -> 'code') IS DISTINCT FROM (p -> 'property') THEN
            PERFORM fl_fail('invalid_params', 'give the property as code or as property, not both');
        END IF;
        IF p ? 'code' THEN
            o := fl_property_by_code(ctx, fl_p_code(p, 'code', path, true));
        ELSE
            o := fl_property_scope(ctx, p, path);
        END IF;
        SELECT * INTO o FROM properties WHERE id = o.id FOR UPDATE;
        IF p ? 'business_date' THEN
            PERFORM fl_fail('invalid_params',
                            'business_date cannot be changed: only the night audit moves it');
        END IF;
    ELSE
        PERFORM fl_check_keys(p, ARRAY['code', 'name', 'currency', 'minor_units', 'timezone',
                                       'business_date', 'audit_time', 'settings'], path);
        v_code := fl_p_code(p, 'code', path, true);
        SELECT * INTO o FROM properties WHERE code = v_code FOR UPDATE;
        IF FOUND THEN
            IF mode = 'create' THEN
                PERFORM fl_fail('conflict', format('property %s already exists', v_code));
            END IF;
            o := fl_property_by_code(ctx, v_code);   -- scope check
        ELSE
            IF fl_ctx_property(ctx) IS NOT NULL THEN
                PERFORM fl_fail('forbidden', 'only a user of all properties may create a property');
            END IF;
            n.code := v_code;
            n.name := fl_p_text(p, 'name', path, true, 200);
            n.currency := fl_p_match(p, 'currency', path, true, '^[A-Z]{3}$',
                                     'an ISO 4217 code of 3 upper-case letters (e.g. "EUR")');
            n.minor_units := coalesce(fl_p_int(p, 'minor_units', path, false, 0, 4), 2);
            n.timezone := fl_p_timezone(p, 'timezone', path, true);
            n.business_date := coalesce(fl_p_date(p, 'business_date', path, false),
                                        (now() AT TIME ZONE n.timezone)::date);
            n.audit_time := coalesce(fl_p_hhmm(p, 'audit_time', path, false), '03:00');
            n.settings := coalesce(fl_p_object(p, 'settings', path, false), '{}');
            BEGIN
                INSERT INTO properties (code, name, currency, minor_units, timezone,
                                        business_date, audit_time, settings,
                                        created_by, updated_by)
                VALUES (n.code, n.name, n.currency, n.minor_units, n.timezone,
                        n.business_date, n.audit_time, n.settings, fl_actor(ctx), fl_actor(ctx))
                RETURNING * INTO n;
            EXCEPTION WHEN unique_violation THEN
                PERFORM fl_fail('conflict', format('property %s already exists', v_code));
            END;
            PERFORM fl_log(ctx, n.id, 'property', n.id, 'create', fl_property_json(n));
            RETURN jsonb_build_object('action', 'created', 'item', fl_property_json(n));
        END IF;
        -- upsert of an existing property: its business date is the night audit's business
        PERFORM fl_p_date(p, 'business_date', path, false);
    END IF;

    n := o;
    IF p ? 'name' THEN
        n.name := fl_p_text(p, 'name', path, true, 200);
    END IF;
    IF p ? 'currency' THEN
        n.currency := fl_p_match(p, 'currency', path, true, '^[A-Z]{3}$',
                                 'an ISO 4217 code of 3 upper-case letters (e.g. "EUR")');
    END IF;
    IF p ? 'minor_units' THEN
        n.minor_units := fl_p_int(p, 'minor_units', path, true, 0, 4);
    END IF;
    IF p ? 'timezone' THEN
        n.timezone := fl_p_timezone(p, 'timezone', path, true);
    END IF;
    IF p ? 'audit_time' THEN
        n.audit_time := fl_p_hhmm(p, 'audit_time', path, true);
    END IF;
    IF p ? 'settings' THEN
        v_settings := fl_p_object(p, 'settings', path, true);
        n.settings := CASE WHEN mode = 'update' THEN fl_jsonb_merge(o.settings, v_settings)
                           ELSE v_settings END;
    END IF;
    IF n IS NOT DISTINCT FROM o THEN
        RETURN jsonb_build_object('action', 'unchanged', 'item', fl_property_json(o));
    END IF;
    UPDATE properties
       SET name = n.name, currency = n.currency, minor_units = n.minor_units,
           timezone = n.timezone, audit_time = n.audit_time, settings = n.settings,
           updated_at = now(), updated_by = fl_actor(ctx)
     WHERE id = o.id
    RETURNING * INTO n;
    PERFORM fl_log(ctx, n.id, 'property', n.id, 'update',
                   fl_diff(fl_property_json(o), fl_property_json(n)));
    RETURN jsonb_build_object('action', 'updated', 'item', fl_property_json(n));
END
$$;

CREATE FUNCTION api_property_create(ctx jsonb, p jsonb) RETURNS jsonb
LANGUAGE sql AS $$ SELECT fl_property_save(ctx, p, 'create') -> 'item' $$;

CREATE FUNCTION api_property_update(ctx jsonb, p jsonb) RETURNS jsonb
LANGUAGE sql AS $$ SELECT fl_property_save(ctx, p, 'update') -> 'item' $$;

CREATE FUNCTION api_property_list(ctx jsonb, p jsonb) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
BEGIN
    p := fl_params(p);
    PERFORM fl_check_keys(p, ARRAY['code'], '');
    RETURN jsonb_build_object('items', coalesce(
        (SELECT jsonb_agg(fl_property_json(r) ORDER BY r.code)
           FROM properties r
          WHERE (fl_ctx_property(ctx) IS NULL OR r.id = fl_ctx_property(ctx))
            AND (NOT p ? 'code' OR r.code = fl_p_code(p, 'code', '', true))),
        '[]'::jsonb));
END
$$;

-- ---------------------------------------------------------------------------------------------
-- Rooms
-- ---------------------------------------------------------------------------------------------

CREATE FUNCTION fl_room_statuses() RETURNS text[]
LANGUAGE sql IMMUTABLE AS $$
    SELECT ARRAY['vacant_clean', 'vacant_dirty', 'occupied_clean', 'occupied_dirty',
                 'out_of_order']
$$;

CREATE FUNCTION fl_p_room_number(p jsonb, k text, path text, required boolean) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT fl_p_match(p, k, path, required, '^[A-Za-z0-9][A-Za-z0-9_-]{0,15}$',
                      '1 to 16 letters, digits, "_" or "-" (e.g. "101")')
$$;

CREATE FUNCTION fl_room_save(ctx jsonb, p jsonb, mode text, path text DEFAULT '')
RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    prop properties;
    o rooms;
    n rooms;
    v_number text;
BEGIN
    p := fl_params(p, path);
    PERFORM fl_check_keys(p, ARRAY['property', 'number', 'room_type', 'floor', 'status'], path);
    prop := fl_property_scope(ctx, p, path);
    v_number := fl_p_room_number(p, 'number', path, true);
    SELECT * INTO o FROM rooms WHERE property_id = prop.id AND number = v_number FOR UPDATE;
    IF NOT FOUND THEN
        IF mode = 'update' THEN
            PERFORM fl_fail('not_found',
                            format('room %s does not exist in property %s', v_number, prop.code));
        END IF;
        n.room_type := fl_p_code(p, 'room_type', path, true);
        n.floor := fl_p_int(p, 'floor', path, false, -10, 300);
        n.status := coalesce(fl_p_enum(p, 'status', path, false, fl_room_statuses()),
                             'vacant_clean');
        BEGIN
            INSERT INTO rooms (property_id, number, room_type, floor, status,
                               created_by, updated_by)
            VALUES (prop.id, v_number, n.room_type, n.floor, n.status,
                    fl_actor(ctx), fl_actor(ctx))
            RETURNING * INTO n;
        EXCEPTION WHEN unique_violation THEN
            PERFORM fl_fail('conflict',
                            format('room %s already exists in property %s', v_number, prop.code));
        END;
        PERFORM fl_log(ctx, prop.id, 'room', n.id, 'create', fl_room_json(n));
        RETURN jsonb_build_object('action', 'created', 'item', fl_room_json(n));
    END IF;
    IF mode = 'create' THEN
        PERFORM fl_fail('conflict',
                        format('room %s already exists in property %s', v_number, prop.code));
    END IF;

    n := o;
    IF p ? 'room_type' THEN
        n.room_type := fl_p_code(p, 'room_type', path, true);
    END IF;
    IF p ? 'floor' THEN
        n.floor := fl_p_int(p, 'floor', path, false, -10, 300);
    END IF;
    IF p ? 'status' THEN
        n.status := fl_p_enum(p, 'status', path, true, fl_room_statuses());
    END IF;
    IF n IS NOT DISTINCT FROM o THEN
        RETURN jsonb_build_object('action', 'unchanged', 'item', fl_room_json(o));
    END IF;
    UPDATE rooms
       SET room_type = n.room_type, floor = n.floor, status = n.status,
           updated_at = now(), updated_by = fl_actor(ctx)
     WHERE id = o.id
    RETURNING * INTO n;
    PERFORM fl_log(ctx, prop.id, 'room', n.id, 'update', fl_diff(fl_room_json(o), fl_room_json(n)));
    RETURN jsonb_build_object('action', 'updated', 'item', fl_room_json(n));
END
$$;

CREATE FUNCTION api_room_create(ctx jsonb, p jsonb) RETURNS jsonb
LANGUAGE sql AS $$ SELECT fl_room_save(ctx, p, 'create') -> 'item' $$;

CREATE FUNCTION api_room_update(ctx jsonb, p jsonb) RETURNS jsonb
LANGUAGE sql AS $$ SELECT fl_room_save(ctx, p, 'update') -> 'item' $$;

CREATE FUNCTION api_room_list(ctx jsonb, p jsonb) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_prop bigint;
    v_status text;
    v_type text;
    v_floor bigint;
BEGIN
    p := fl_params(p);
    PERFORM fl_check_keys(p, ARRAY['property', 'status', 'room_type', 'floor'], '');
    v_prop := fl_property_filter(ctx, p);
    v_status := fl_p_enum(p, 'status', '', false, fl_room_statuses());
    v_type := fl_p_code(p, 'room_type', '', false);
    v_floor := fl_p_int(p, 'floor', '', false, -10, 300);
    RETURN jsonb_build_object('items', coalesce(
        (SELECT jsonb_agg(fl_room_json(r) ORDER BY pr.code, length(r.number), r.number)
           FROM rooms r JOIN properties pr ON pr.id = r.property_id
          WHERE (v_prop IS NULL OR r.property_id = v_prop)
            AND (v_status IS NULL OR r.status = v_status)
            AND (v_type IS NULL OR r.room_type = v_type)
            AND (v_floor IS NULL OR r.floor = v_floor)),
        '[]'::jsonb));
END
$$;

-- ---------------------------------------------------------------------------------------------
-- Transaction codes and their rules
-- ---------------------------------------------------------------------------------------------

CREATE FUNCTION fl_department_default(v_kind text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE v_kind WHEN 'payment' THEN 'payments' WHEN 'tax' THEN 'tax'
                       WHEN 'service' THEN 'service' END
$$;

-- Checks a "rules" array for a charge code and returns it in the form fl_trx_rules_json gives,
-- with seq numbered from 1 in array order.
CREATE FUNCTION fl_trx_rules_parse(v_property_id bigint, v_code_id bigint, v_code text,
                                   rules jsonb, path text) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
    res jsonb := '[]';
    rule jsonb;
    i integer := 0;
    rpath text;
    g trx_codes;
    v_gcode text;
    v_rate bigint;
    v_incl boolean;
    v_comp boolean;
    seen_exclusive boolean := false;
BEGIN
    IF jsonb_array_length(rules) > 16 THEN
        PERFORM fl_fail('invalid_params', path || 'rules: at most 16 rules');
    END IF;
    FOR rule IN SELECT value FROM jsonb_array_elements(rules) LOOP
        rpath := format('%srules[%s].', path, i);
        i := i + 1;
        rule := fl_params(rule, rpath);
        PERFORM fl_check_keys(rule, ARRAY['code', 'rate_ppm', 'inclusive', 'compound'], rpath);
        v_gcode := fl_p_code(rule, 'code', rpath, true);
        v_rate := fl_p_int(rule, 'rate_ppm', rpath, true, 0, 1000000);
        v_incl := coalesce(fl_p_bool(rule, 'inclusive', rpath, false), false);
        v_comp := coalesce(fl_p_bool(rule, 'compound', rpath, false), false);
        IF v_gcode = v_code THEN
            PERFORM fl_fail('invalid_params', rpath || 'code: a code cannot generate itself');
        END IF;
        SELECT * INTO g FROM trx_codes WHERE property_id = v_property_id AND code = v_gcode;
        IF NOT FOUND THEN
            PERFORM fl_fail('invalid_params',
                            format('%scode: transaction code %s does not exist', rpath, v_gcode));
        END IF;
        IF g.kind NOT IN ('tax', 'service') THEN
            PERFORM fl_fail('invalid_params',
                            format('%scode: %s is a %s code; a rule generates a tax or '
                                   'service code', rpath, v_gcode, g.kind));
        END IF;
        IF NOT g.enabled THEN
            PERFORM fl_fail('invalid_params',
                            format('%scode: transaction code %s is disabled', rpath, v_gcode));
        END IF;
        IF v_incl AND v_comp THEN
            PERFORM fl_fail('invalid_params',
                            rtrim(rpath, '.') || ': an inclusive rule cannot be compound');
        END IF;
        IF v_incl AND seen_exclusive THEN
            PERFORM fl_fail('invalid_params', rtrim(rpath, '.')
                            || ': inclusive rules must come before exclusive ones');
        END IF;
        seen_exclusive := seen_exclusive OR NOT v_incl;
        IF res @> jsonb_build_array(jsonb_build_object('code', v_gcode)) THEN
            PERFORM fl_fail('invalid_params',
                            format('%scode: %s appears twice in the rules', rpath, v_gcode));
        END IF;
        res := res || jsonb_build_array(jsonb_build_object(
            'seq', i, 'code', v_gcode, 'rate_ppm', v_rate, 'inclusive', v_incl,
            'compound', v_comp));
    END LOOP;
    RETURN res;
END
$$;

-- Replaces the rules of a code by a list from fl_trx_rules_parse.
CREATE FUNCTION fl_trx_rules_store(v_property_id bigint, v_code_id bigint, rules jsonb)
RETURNS void
LANGUAGE sql AS $$
    DELETE FROM trx_code_rules WHERE code_id = v_code_id;
    INSERT INTO trx_code_rules (property_id, code_id, seq, generated_code_id, rate_ppm,
                                inclusive, compound)
    SELECT v_property_id, v_code_id, (e ->> 'seq')::integer, g.id, (e ->> 'rate_ppm')::integer,
           (e ->> 'inclusive')::boolean, (e ->> 'compound')::boolean
      FROM jsonb_array_elements(rules) AS e
      JOIN trx_codes g ON g.property_id = v_property_id AND g.code = e ->> 'code';
$$;

CREATE FUNCTION fl_trx_code_save(ctx jsonb, p jsonb, mode text, path text DEFAULT '')
RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    prop properties;
    o trx_codes;
    n trx_codes;
    v_code text;
    v_kind text;
    v_rules jsonb;
    old_json jsonb;
    new_json jsonb;
    users_of text;
BEGIN
    p := fl_params(p, path);
    PERFORM fl_check_keys(p, ARRAY['property', 'code', 'description', 'department', 'kind',
                                   'payment_method', 'enabled', 'rules'], path);
    prop := fl_property_scope(ctx, p, path);
    v_code := fl_p_code(p, 'code', path, true);
    v_kind := fl_p_enum(p, 'kind', path, false, ARRAY['charge', 'payment', 'tax', 'service']);
    SELECT * INTO o FROM trx_codes WHERE property_id = prop.id AND code = v_code FOR UPDATE;
    IF NOT FOUND THEN
        IF mode = 'update' THEN
            PERFORM fl_fail('not_found', format('transaction code %s does not exist in property %s',
                                                v_code, prop.code));
        END IF;
        IF v_kind IS NULL THEN
            PERFORM fl_p_enum(p, 'kind', path, true, ARRAY['charge', 'payment', 'tax', 'service']);
        END IF;
        n.description := fl_p_text(p, 'description', path, true, 200);
        n.department := coalesce(
            fl_p_match(p, 'department', path, v_kind = 'charge', '^[a-z][a-z0-9_]{0,31}$',
                       '1 to 32 lower-case letters, digits or "_" (e.g. "food")'),
            fl_department_default(v_kind));
        n.payment_method := fl_p_enum(p, 'payment_method', path, v_kind = 'payment',
                                      ARRAY['cash', 'card', 'deposit', 'bank_transfer']);
        IF v_kind <> 'payment' AND n.payment_method IS NOT NULL THEN
            PERFORM fl_fail('invalid_params', path || 'payment_method is only for payment codes');
        END IF;
        n.enabled := coalesce(fl_p_bool(p, 'enabled', path, false), true);
        v_rules := fl_p_array(p, 'rules', path, false);
        IF v_rules IS NOT NULL AND v_kind <> 'charge' AND jsonb_array_length(v_rules) > 0 THEN
            PERFORM fl_fail('invalid_params', path || 'rules: only charge codes have rules');
        END IF;
        BEGIN
            INSERT INTO trx_codes (property_id, code, description, department, kind,
                                   payment_method, enabled, created_by, updated_by)
            VALUES (prop.id, v_code, n.description, n.department, v_kind, n.payment_method,
                    n.enabled, fl_actor(ctx), fl_actor(ctx))
            RETURNING * INTO n;
        EXCEPTION WHEN unique_violation THEN
            PERFORM fl_fail('conflict', format('transaction code %s already exists in property %s',
                                               v_code, prop.code));
        END;
        IF v_rules IS NOT NULL THEN
            PERFORM fl_trx_rules_store(prop.id, n.id,
                                       fl_trx_rules_parse(prop.id, n.id, v_code, v_rules, path));
        END IF;
        PERFORM fl_log(ctx, prop.id, 'trx_code', n.id, 'create', fl_trx_code_json(n));
        RETURN jsonb_build_object('action', 'created', 'item', fl_trx_code_json(n));
    END IF;
    IF mode = 'create' THEN
        PERFORM fl_fail('conflict', format('transaction code %s already exists in property %s',
                                           v_code, prop.code));
    END IF;

    IF v_kind IS NOT NULL AND v_kind <> o.kind THEN
        PERFORM fl_fail('invalid_params',
                        format('%skind: %s is a %s code and its kind never changes; '
                               'create a new code instead', path, v_code, o.kind));
    END IF;
    n := o;
    IF p ? 'description' THEN
        n.description := fl_p_text(p, 'description', path, true, 200);
    END IF;
    IF p ? 'department' THEN
        n.department := fl_p_match(p, 'department', path, true, '^[a-z][a-z0-9_]{0,31}$',
                                   '1 to 32 lower-case letters, digits or "_" (e.g. "food")');
    END IF;
    IF p ? 'payment_method' THEN
        n.payment_method := fl_p_enum(p, 'payment_method', path, o.kind = 'payment',
                                      ARRAY['cash', 'card', 'deposit', 'bank_transfer']);
        IF o.kind <> 'payment' AND n.payment_method IS NOT NULL THEN
            PERFORM fl_fail('invalid_params', path || 'payment_method is only for payment codes');
        END IF;
    END IF;
    IF p ? 'enabled' THEN
        n.enabled := fl_p_bool(p, 'enabled', path, true);
        IF o.enabled AND NOT n.enabled THEN
            SELECT string_agg(DISTINCT c.code, ', ') INTO users_of
              FROM trx_code_rules cr JOIN trx_codes c ON c.id = cr.code_id
             WHERE cr.generated_code_id = o.id AND c.enabled;
            IF users_of IS NOT NULL THEN
                PERFORM fl_fail('conflict',
                                format('%s is generated by the rules of %s; change those first',
                                       v_code, users_of));
            END IF;
        END IF;
    END IF;
    old_json := fl_trx_code_json(o);
    IF p ? 'rules' THEN
        v_rules := fl_p_array(p, 'rules', path, true);
        IF o.kind <> 'charge' AND jsonb_array_length(v_rules) > 0 THEN
            PERFORM fl_fail('invalid_params', path || 'rules: only charge codes have rules');
        END IF;
        v_rules := fl_trx_rules_parse(prop.id, o.id, v_code, v_rules, path);
        IF v_rules IS DISTINCT FROM old_json -> 'rules' THEN
            PERFORM fl_trx_rules_store(prop.id, o.id, v_rules);
        ELSE
            v_rules := NULL;
        END IF;
    END IF;
    IF n IS NOT DISTINCT FROM o AND v_rules IS NULL THEN
        RETURN jsonb_build_object('action', 'unchanged', 'item', old_json);
    END IF;
    UPDATE trx_codes
       SET description = n.description, department = n.department,
           payment_method = n.payment_method, enabled = n.enabled,
           updated_at = now(), updated_by = fl_actor(ctx)
     WHERE id = o.id
    RETURNING * INTO n;
    new_json := fl_trx_code_json(n);
    PERFORM fl_log(ctx, prop.id, 'trx_code', n.id, 'update', fl_diff(old_json, new_json));
    RETURN jsonb_build_object('action', 'updated', 'item', new_json);
END
$$;

CREATE FUNCTION api_trx_code_create(ctx jsonb, p jsonb) RETURNS jsonb
LANGUAGE sql AS $$ SELECT fl_trx_code_save(ctx, p, 'create') -> 'item' $$;

CREATE FUNCTION api_trx_code_update(ctx jsonb, p jsonb) RETURNS jsonb
LANGUAGE sql AS $$ SELECT fl_trx_code_save(ctx, p, 'update') -> 'item' $$;

CREATE FUNCTION api_trx_code_list(ctx jsonb, p jsonb) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_prop bigint;
    v_kind text;
    v_dept text;
    v_enabled boolean;
BEGIN
    p := fl_params(p);
    PERFORM fl_check_keys(p, ARRAY['property', 'kind', 'department', 'enabled'], '');
    v_prop := fl_property_filter(ctx, p);
    v_kind := fl_p_enum(p, 'kind', '', false, ARRAY['charge', 'payment', 'tax', 'service']);
    v_dept := fl_p_text(p, 'department', '', false, 32);
    v_enabled := fl_p_bool(p, 'enabled', '', false);
    RETURN jsonb_build_object('items', coalesce(
        (SELECT jsonb_agg(fl_trx_code_json(c) ORDER BY pr.code, c.code)
           FROM trx_codes c JOIN properties pr ON pr.id = c.property_id
          WHERE (v_prop IS NULL OR c.property_id = v_prop)
            AND (v_kind IS NULL OR c.kind = v_kind)
            AND (v_dept IS NULL OR c.department = v_dept)
            AND (v_enabled IS NULL OR c.enabled = v_enabled)),
        '[]'::jsonb));
END
$$;

-- ---------------------------------------------------------------------------------------------
-- Outlets
-- ---------------------------------------------------------------------------------------------

-- Applies the policy members given onto base (a complete policy) and returns the result.
-- A member set to null goes back to its default.
CREATE FUNCTION fl_outlet_policy(v_property_id bigint, base jsonb, given jsonb, path text)
RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
    defaults jsonb := fl_outlet_policy_defaults();
    pol jsonb := defaults || base;
    ppath text := path || 'policy.';
    k text;
    v jsonb;
    codes jsonb;
    c jsonb;
    kind_of text;
BEGIN
    PERFORM fl_check_keys(given, ARRAY(SELECT jsonb_object_keys(defaults)), ppath);
    FOR k, v IN SELECT e.key, e.value FROM jsonb_each(given) AS e LOOP
        IF jsonb_typeof(v) = 'null' THEN
            v := defaults -> k;
        ELSIF k = 'allowed_codes' THEN
            IF jsonb_typeof(v) <> 'array' THEN
                PERFORM fl_fail('invalid_params', ppath || k || ' must be an array of codes');
            END IF;
            FOR c IN SELECT value FROM jsonb_array_elements(v) LOOP
                IF jsonb_typeof(c) <> 'string' THEN
                    PERFORM fl_fail('invalid_params', ppath || k || ' must be an array of codes');
                END IF;
                SELECT t.kind INTO kind_of FROM trx_codes t
                 WHERE t.property_id = v_property_id AND t.code = c #>> '{}';
                IF NOT FOUND THEN
                    PERFORM fl_fail('invalid_params',
                                    format('%s%s: transaction code %s does not exist',
                                           ppath, k, c #>> '{}'));
                END IF;
                IF kind_of = 'payment' THEN
                    PERFORM fl_fail('invalid_params', format('%s%s: %s is a payment code',
                                                             ppath, k, c #>> '{}'));
                END IF;
            END LOOP;
            -- sorted and without duplicates, so that equal policies compare equal
            SELECT coalesce(jsonb_agg(DISTINCT e), '[]'::jsonb) INTO codes
              FROM jsonb_array_elements(v) AS e;
            v := codes;
        ELSIF k IN ('max_per_posting', 'max_per_day') THEN
            v := to_jsonb(fl_p_int(given, k, ppath, false, 1, 1000000000000));
        ELSIF k = 'late_charge_hours' THEN
            v := to_jsonb(fl_p_int(given, k, ppath, false, 0, 720));
        ELSIF k = 'credit_policy' THEN
            v := to_jsonb(fl_p_enum(given, k, ppath, false, ARRAY['refuse', 'flag']));
        ELSE
            v := to_jsonb(fl_p_bool(given, k, ppath, false));
        END IF;
        pol := pol || jsonb_build_object(k, v);
    END LOOP;
    RETURN pol;
END
$$;

-- Accepts a SHA-256 fingerprint in any case, with or without colons; stores lower-case hex.
CREATE FUNCTION fl_normalize_fingerprint(fp text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT lower(replace(replace(btrim(fp), ':', ''), ' ', ''))
$$;

CREATE FUNCTION fl_outlet_save(ctx jsonb, p jsonb, mode text, path text DEFAULT '')
RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    prop properties;
    o outlets;
    n outlets;
    v_code text;
    v_policy jsonb;
    clash text;
BEGIN
    p := fl_params(p, path);
    PERFORM fl_check_keys(p, ARRAY['property', 'code', 'name', 'cert_cn', 'cert_fingerprint',
                                   'enabled', 'policy'], path);
    prop := fl_property_scope(ctx, p, path);
    v_code := fl_p_code(p, 'code', path, true);
    SELECT * INTO o FROM outlets WHERE property_id = prop.id AND code = v_code FOR UPDATE;
    IF FOUND AND mode = 'create' THEN
        PERFORM fl_fail('conflict', format('outlet %s already exists in property %s',
                                           v_code, prop.code));
    END IF;
    IF NOT FOUND AND mode = 'update' THEN
        PERFORM fl_fail('not_found', format('outlet %s does not exist in property %s',
                                            v_code, prop.code));
    END IF;

    IF o.id IS NULL THEN
        n.property_id := prop.id;
        n.code := v_code;
        n.name := fl_p_text(p, 'name', path, true, 200);
        n.enabled := coalesce(fl_p_bool(p, 'enabled', path, false), true);
        n.policy := fl_outlet_policy_defaults();
    ELSE
        n := o;
        IF p ? 'name' THEN
            n.name := fl_p_text(p, 'name', path, true, 200);
        END IF;
        IF p ? 'enabled' THEN
            n.enabled := fl_p_bool(p, 'enabled', path, true);
        END IF;
    END IF;
    IF p ? 'cert_cn' THEN
        n.cert_cn := fl_p_text(p, 'cert_cn', path, false, 64);
    END IF;
    IF p ? 'cert_fingerprint' THEN
        n.cert_fingerprint := fl_normalize_fingerprint(
            fl_p_text(p, 'cert_fingerprint', path, false, 200));
        IF n.cert_fingerprint !~ '^[0-9a-f]{64}$' THEN
            PERFORM fl_fail('invalid_params', path || 'cert_fingerprint must be the SHA-256 '
                            'fingerprint of the certificate: 64 hexadecimal digits, colons '
                            'allowed');
        END IF;
    END IF;
    IF p ? 'policy' THEN
        v_policy := fl_p_object(p, 'policy', path, true);
        -- update merges the members given; create and the import give the whole policy
        n.policy := fl_outlet_policy(prop.id,
                                     CASE WHEN mode = 'update' THEN n.policy
                                          ELSE fl_outlet_policy_defaults() END,
                                     v_policy, path);
    ELSE
        n.policy := fl_outlet_policy_defaults() || n.policy;
    END IF;

    IF n.cert_fingerprint IS NOT NULL THEN
        SELECT format('outlet %s of property %s', x.code, fl_property_code(x.property_id))
          INTO clash FROM outlets x
         WHERE x.cert_fingerprint = n.cert_fingerprint AND x.id IS DISTINCT FROM o.id;
        IF clash IS NOT NULL THEN
            PERFORM fl_fail('conflict',
                            'this certificate fingerprint already identifies ' || clash);
        END IF;
    ELSIF n.cert_cn IS NOT NULL THEN
        SELECT format('outlet %s of property %s', x.code, fl_property_code(x.property_id))
          INTO clash FROM outlets x
         WHERE x.cert_cn = n.cert_cn AND x.cert_fingerprint IS NULL
           AND x.id IS DISTINCT FROM o.id;
        IF clash IS NOT NULL THEN
            PERFORM fl_fail('conflict', format('certificate CN "%s" already identifies %s; '
                                               'give one of them a fingerprint or another CN',
                                               n.cert_cn, clash));
        END IF;
    END IF;

    IF o.id IS NULL THEN
        BEGIN
            INSERT INTO outlets (property_id, code, name, cert_fingerprint, cert_cn, enabled,
                                 policy, created_by, updated_by)
            VALUES (prop.id, v_code, n.name, n.cert_fingerprint, n.cert_cn, n.enabled,
                    n.policy, fl_actor(ctx), fl_actor(ctx))
            RETURNING * INTO n;
        EXCEPTION WHEN unique_violation THEN
            PERFORM fl_fail('conflict', format('outlet %s or its certificate already exists',
                                               v_code));
        END;
        PERFORM fl_log(ctx, prop.id, 'outlet', n.id, 'create', fl_outlet_json(n));
        RETURN jsonb_build_object('action', 'created', 'item', fl_outlet_json(n));
    END IF;

    IF n IS NOT DISTINCT FROM o THEN
        RETURN jsonb_build_object('action', 'unchanged', 'item', fl_outlet_json(o));
    END IF;
    BEGIN
        UPDATE outlets
           SET name = n.name, cert_fingerprint = n.cert_fingerprint, cert_cn = n.cert_cn,
               enabled = n.enabled, policy = n.policy,
               updated_at = now(), updated_by = fl_actor(ctx)
         WHERE id = o.id
        RETURNING * INTO n;
    EXCEPTION WHEN unique_violation THEN
        PERFORM fl_fail('conflict', 'this certificate already identifies another outlet');
    END;
    PERFORM fl_log(ctx, prop.id, 'outlet', n.id, 'update',
                   fl_diff(fl_outlet_json(o), fl_outlet_json(n)));
    RETURN jsonb_build_object('action', 'updated', 'item', fl_outlet_json(n));
END
$$;

CREATE FUNCTION api_outlet_create(ctx jsonb, p jsonb) RETURNS jsonb
LANGUAGE sql AS $$ SELECT fl_outlet_save(ctx, p, 'create') -> 'item' $$;

CREATE FUNCTION api_outlet_update(ctx jsonb, p jsonb) RETURNS jsonb
LANGUAGE sql AS $$ SELECT fl_outlet_save(ctx, p, 'update') -> 'item' $$;

CREATE FUNCTION api_outlet_list(ctx jsonb, p jsonb) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_prop bigint;
    v_enabled boolean;
BEGIN
    p := fl_params(p);
    PERFORM fl_check_keys(p, ARRAY['property', 'enabled'], '');
    v_prop := fl_property_filter(ctx, p);
    v_enabled := fl_p_bool(p, 'enabled', '', false);
    RETURN jsonb_build_object('items', coalesce(
        (SELECT jsonb_agg(fl_outlet_json(x) ORDER BY pr.code, x.code)
           FROM outlets x JOIN properties pr ON pr.id = x.property_id
          WHERE (v_prop IS NULL OR x.property_id = v_prop)
            AND (v_enabled IS NULL OR x.enabled = v_enabled)),
        '[]'::jsonb));
END
$$;

-- ---------------------------------------------------------------------------------------------
-- Users
-- ---------------------------------------------------------------------------------------------

CREATE FUNCTION fl_user_save(ctx jsonb, p jsonb, mode text, path text DEFAULT '')
RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    scope bigint := fl_ctx_property(ctx);
    o users;
    n users;
    v_username text;
    v_hash text;
    changed_hash boolean := false;
    detail jsonb;
BEGIN
    p := fl_params(p, path);
    IF p ? 'password' THEN
        PERFORM fl_fail('invalid_params', path || 'password: the server stores only password '
                        'hashes; the daemon must replace "password" by "password_hash"');
    END IF;
    PERFORM fl_check_keys(p, ARRAY['username', 'password_hash', 'role', 'property', 'full_name',
                                   'enabled'], path);
    v_username := fl_p_match(p, 'username', path, true, '^[a-z0-9][a-z0-9._@-]{0,63}$',
                             '1 to 64 lower-case letters, digits, ".", "_", "@" or "-"');
    v_hash := fl_p_text(p, 'password_hash', path, false, 1024);
    IF v_hash ~ '\s' THEN
        PERFORM fl_fail('invalid_params', path || 'password_hash must not contain spaces');
    END IF;
    SELECT * INTO o FROM users WHERE username = v_username FOR UPDATE;
    IF FOUND AND mode = 'create' THEN
        PERFORM fl_fail('conflict', format('user %s already exists', v_username));
    END IF;
    IF NOT FOUND AND mode = 'update' THEN
        PERFORM fl_fail('not_found', format('user %s does not exist', v_username));
    END IF;
    IF o.id IS NOT NULL AND scope IS NOT NULL AND o.property_id IS DISTINCT FROM scope THEN
        PERFORM fl_fail('forbidden',
                        format('user %s does not belong to your property', v_username));
    END IF;

    IF o.id IS NULL THEN
        IF v_hash IS NULL THEN
            PERFORM fl_fail('invalid_params', path || 'password_hash is required for a new user');
        END IF;
        n.username := v_username;
        n.password_hash := v_hash;
        n.role := fl_p_enum(p, 'role', path, true, ARRAY['cashier', 'auditor', 'manager', 'admin']);
        n.property_id := scope;
        n.enabled := coalesce(fl_p_bool(p, 'enabled', path, false), true);
    ELSE
        n := o;
        IF v_hash IS NOT NULL AND v_hash <> o.password_hash THEN
            n.password_hash := v_hash;
            changed_hash := true;
        ELSIF p ? 'password_hash' AND v_hash IS NULL THEN
            PERFORM fl_fail('invalid_params', path || 'password_hash must not be empty');
        END IF;
        IF p ? 'role' THEN
            n.role := fl_p_enum(p, 'role', path, true,
                                ARRAY['cashier', 'auditor', 'manager', 'admin']);
        END IF;
        IF p ? 'enabled' THEN
            n.enabled := fl_p_bool(p, 'enabled', path, true);
        END IF;
    END IF;
    IF p ? 'full_name' THEN
        n.full_name := fl_p_text(p, 'full_name', path, false, 200);
    END IF;
    -- "property" here is the user's own property: a code, or null for every property
    IF p ? 'property' THEN
        IF fl_p_missing(p, 'property', path, false) THEN
            IF scope IS NOT NULL THEN
                PERFORM fl_fail('forbidden', 'only a user of all properties may give a user '
                                'every property');
            END IF;
            n.property_id := NULL;
        ELSE
            n.property_id := (fl_property_by_code(ctx, fl_p_code(p, 'property', path, true))).id;
        END IF;
    END IF;
    -- an administrator who locks themselves out needs the database to get back in
    IF o.id IS NOT NULL AND o.id = (ctx ->> 'user_id')::bigint
       AND (NOT n.enabled OR n.role <> o.role OR n.property_id IS DISTINCT FROM o.property_id) THEN
        PERFORM fl_fail('forbidden', 'you cannot disable your own account or change its role '
                        'or property');
    END IF;

    IF o.id IS NULL THEN
        BEGIN
            INSERT INTO users (username, password_hash, role, property_id, full_name, enabled,
                               created_by, updated_by)
            VALUES (n.username, n.password_hash, n.role, n.property_id, n.full_name, n.enabled,
                    fl_actor(ctx), fl_actor(ctx))
            RETURNING * INTO n;
        EXCEPTION WHEN unique_violation THEN
            PERFORM fl_fail('conflict', format('user %s already exists', v_username));
        END;
        PERFORM fl_log(ctx, n.property_id, 'user', n.id, 'create', fl_user_json(n));
        RETURN jsonb_build_object('action', 'created', 'item', fl_user_json(n));
    END IF;

    IF n IS NOT DISTINCT FROM o THEN
        RETURN jsonb_build_object('action', 'unchanged', 'item', fl_user_json(o));
    END IF;
    UPDATE users
       SET password_hash = n.password_hash, role = n.role, property_id = n.property_id,
           full_name = n.full_name, enabled = n.enabled,
           updated_at = now(), updated_by = fl_actor(ctx)
     WHERE id = o.id
    RETURNING * INTO n;
    detail := fl_diff(fl_user_json(o), fl_user_json(n));
    IF changed_hash THEN
        detail := detail || '{"password_changed": true}';
    END IF;
    PERFORM fl_log(ctx, n.property_id, 'user', n.id, 'update', detail);
    RETURN jsonb_build_object('action', 'updated', 'item', fl_user_json(n));
END
$$;

CREATE FUNCTION api_user_create(ctx jsonb, p jsonb) RETURNS jsonb
LANGUAGE sql AS $$ SELECT fl_user_save(ctx, p, 'create') -> 'item' $$;

CREATE FUNCTION api_user_update(ctx jsonb, p jsonb) RETURNS jsonb
LANGUAGE sql AS $$ SELECT fl_user_save(ctx, p, 'update') -> 'item' $$;

-- A caller bound to a property sees only that property's users.
CREATE FUNCTION api_user_list(ctx jsonb, p jsonb) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_prop bigint;
    v_role text;
    v_enabled boolean;
BEGIN
    p := fl_params(p);
    PERFORM fl_check_keys(p, ARRAY['property', 'role', 'enabled'], '');
    v_prop := fl_property_filter(ctx, p);
    v_role := fl_p_enum(p, 'role', '', false, ARRAY['cashier', 'auditor', 'manager', 'admin']);
    v_enabled := fl_p_bool(p, 'enabled', '', false);
    RETURN jsonb_build_object('items', coalesce(
        (SELECT jsonb_agg(fl_user_json(u) ORDER BY u.username)
           FROM users u
          WHERE (v_prop IS NULL OR u.property_id = v_prop)
            AND (v_role IS NULL OR u.role = v_role)
            AND (v_enabled IS NULL OR u.enabled = v_enabled)),
        '[]'::jsonb));
END
$$;

-- ---------------------------------------------------------------------------------------------
-- Identity lookups for the daemon and server.info
-- ---------------------------------------------------------------------------------------------

-- NULL when there is no such user. Disabled users are returned: the caller checks "enabled".
CREATE FUNCTION auth_user_lookup(v_username text) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', u.id, 'username', u.username, 'role', u.role, 'property_id', u.property_id,
        'property_code', pr.code, 'password_hash', u.password_hash, 'enabled', u.enabled,
        'full_name', u.full_name)
      FROM users u LEFT JOIN properties pr ON pr.id = u.property_id
     WHERE u.username = v_username
$$;

-- The outlet a client certificate identifies: the one with this fingerprint, else the one with
-- this subject CN among the outlets that have no fingerprint. NULL when none. Disabled outlets
-- are returned: the caller checks "enabled".
CREATE FUNCTION auth_outlet_lookup(fingerprint text, cn text) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', x.id, 'code', x.code, 'name', x.name, 'property_id', x.property_id,
        'property_code', pr.code, 'enabled', x.enabled,
        'policy', fl_outlet_policy_defaults() || x.policy)
      FROM outlets x JOIN properties pr ON pr.id = x.property_id
     WHERE x.id = coalesce(
               (SELECT y.id FROM outlets y
                 WHERE y.cert_fingerprint = fl_normalize_fingerprint(fingerprint)),
               (SELECT y.id FROM outlets y
                 WHERE y.cert_fingerprint IS NULL AND y.cert_cn = cn))
$$;

CREATE FUNCTION api_server_info(ctx jsonb, p jsonb) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('properties', coalesce(
        (SELECT jsonb_agg(jsonb_build_object(
                    'code', r.code, 'name', r.name, 'currency', r.currency,
                    'minor_units', r.minor_units, 'business_date', r.business_date,
                    'timezone', r.timezone) ORDER BY r.code)
           FROM properties r
          WHERE fl_ctx_property(ctx) IS NULL OR r.id = fl_ctx_property(ctx)),
        '[]'::jsonb))
$$;
