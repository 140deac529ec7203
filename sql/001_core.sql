-- 001_core.sql - the reference data of a property and the helpers every API function uses.
--
-- Tables: properties, rooms, trx_codes, trx_code_rules, outlets, users, change_log.
-- Helpers: fl_fail() raises a domain error; fl_p_*() read and check one member of a params
-- object; fl_property_*() resolve the property a call works on and enforce the caller's scope;
-- fl_log() appends to the change log; fl_code_split() applies a transaction code's tax and
-- service rules to an amount; fl_refuse_change() is the trigger that keeps a table append-only.
--
-- Applied once by the migrate command inside one transaction and recorded in schema_migrations;
-- never edited once landed: a fix is a new numbered file. docs/schema.md describes the schema,
-- the error convention and every function.
--
-- Conventions: money is bigint minor units of the property's currency; rates are integer parts
-- per million; no float or numeric column holds money. A domain error is SQLSTATE FL000 with a
-- stable lower-case reason as the message and a sentence for a person as the detail.

-- ---------------------------------------------------------------------------------------------
-- Errors and parameter checks (no table access)
-- ---------------------------------------------------------------------------------------------

CREATE FUNCTION fl_fail(reason text, message text) RETURNS void
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = 'FL000', MESSAGE = reason, DETAIL = message;
END
$$;

-- The params object of a call (NULL means no params). path is the prefix that names the object
-- in messages, '' at the top level or e.g. 'properties[0].rooms[3].' inside an import.
CREATE FUNCTION fl_params(p jsonb, path text DEFAULT '') RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF p IS NULL OR jsonb_typeof(p) = 'null' THEN
        RETURN '{}'::jsonb;
    END IF;
    IF jsonb_typeof(p) <> 'object' THEN
        PERFORM fl_fail('invalid_params',
                        CASE WHEN path = '' THEN 'params must be an object'
                             ELSE rtrim(path, '.') || ' must be an object' END);
    END IF;
    RETURN p;
END
$$;

-- Unknown members are refused so that a misspelt field never passes silently.
CREATE FUNCTION fl_check_keys(p jsonb, allowed text[], path text DEFAULT '') RETURNS void
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    unknown text;
BEGIN
    SELECT string_agg(path || k, ', ' ORDER BY k) INTO unknown
      FROM jsonb_object_keys(p) AS k
     WHERE NOT (k = ANY (allowed));
    IF unknown IS NOT NULL THEN
        PERFORM fl_fail('invalid_params', 'unknown field: ' || unknown);
    END IF;
END
$$;

-- NULL when the member is absent or JSON null; an error then if required. A member present with
-- null gets "must not be null" so that an update that tries to clear a mandatory field says so.
CREATE FUNCTION fl_p_missing(p jsonb, k text, path text, required boolean) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF p -> k IS NULL OR jsonb_typeof(p -> k) = 'null' THEN
        IF required THEN
            PERFORM fl_fail('invalid_params',
                            path || k || CASE WHEN p ? k THEN ' must not be null'
                                              ELSE ' is required' END);
        END IF;
        RETURN true;
    END IF;
    RETURN false;
END
$$;

-- A string, trimmed; an empty string counts as absent.
CREATE FUNCTION fl_p_text(p jsonb, k text, path text, required boolean,
                          max_len integer DEFAULT 200) RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    s text;
BEGIN
    IF fl_p_missing(p, k, path, required) THEN
        RETURN NULL;
    END IF;
    IF jsonb_typeof(p -> k) <> 'string' THEN
        PERFORM fl_fail('invalid_params', path || k || ' must be a string');
    END IF;
    s := btrim(p ->> k, E' \t\r\n');
    IF s = '' THEN
        IF required THEN
            PERFORM fl_fail('invalid_params', path || k || ' must not be empty');
        END IF;
        RETURN NULL;
    END IF;
    IF length(s) > max_len THEN
        PERFORM fl_fail('invalid_params',
                        format('%s%s must be at most %s characters', path, k, max_len));
    END IF;
    IF s ~ '[[:cntrl:]]' THEN
        PERFORM fl_fail('invalid_params', path || k || ' must not contain control characters');
    END IF;
    RETURN s;
END
$$;

-- A string that matches pattern; what describes the expected form for the message.
CREATE FUNCTION fl_p_match(p jsonb, k text, path text, required boolean, pattern text,
                           what text) RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    s text := fl_p_text(p, k, path, required, 1000);
BEGIN
    IF s IS NOT NULL AND s !~ pattern THEN
        PERFORM fl_fail('invalid_params', path || k || ' must be ' || what);
    END IF;
    RETURN s;
END
$$;

-- The codes of properties, transaction codes, outlets and room types.
CREATE FUNCTION fl_p_code(p jsonb, k text, path text, required boolean) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT fl_p_match(p, k, path, required, '^[A-Z0-9][A-Z0-9_-]{0,15}$',
                      '1 to 16 upper-case letters, digits, "_" or "-"')
$$;

-- An integer between lo and hi. A JSON real (2.5, but also 2.0) is refused, like a string.
CREATE FUNCTION fl_p_int(p jsonb, k text, path text, required boolean, lo bigint, hi bigint)
RETURNS bigint
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    n numeric;
BEGIN
    IF fl_p_missing(p, k, path, required) THEN
        RETURN NULL;
    END IF;
    IF jsonb_typeof(p -> k) <> 'number' THEN
        PERFORM fl_fail('invalid_params', path || k || ' must be an integer');
    END IF;
    n := (p -> k)::numeric;
    IF scale(n) > 0 THEN
        PERFORM fl_fail('invalid_params', path || k || ' must be an integer, not a real number');
    END IF;
    IF n < lo OR n > hi THEN
        PERFORM fl_fail('invalid_params',
                        format('%s%s must be between %s and %s', path, k, lo, hi));
    END IF;
    RETURN n::bigint;
END
$$;

CREATE FUNCTION fl_p_bool(p jsonb, k text, path text, required boolean) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF fl_p_missing(p, k, path, required) THEN
        RETURN NULL;
    END IF;
    IF jsonb_typeof(p -> k) <> 'boolean' THEN
        PERFORM fl_fail('invalid_params', path || k || ' must be true or false');
    END IF;
    RETURN (p -> k)::boolean;
END
$$;

CREATE FUNCTION fl_p_enum(p jsonb, k text, path text, required boolean, allowed text[])
RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    s text;
BEGIN
    IF fl_p_missing(p, k, path, required) THEN
        RETURN NULL;
    END IF;
    IF jsonb_typeof(p -> k) <> 'string' OR NOT ((p ->> k) = ANY (allowed)) THEN
        PERFORM fl_fail('invalid_params',
                        path || k || ' must be one of: ' || array_to_string(allowed, ', '));
    END IF;
    s := p ->> k;
    RETURN s;
END
$$;

-- A calendar date written YYYY-MM-DD.
CREATE FUNCTION fl_p_date(p jsonb, k text, path text, required boolean) RETURNS date
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    s text;
    d date;
BEGIN
    IF fl_p_missing(p, k, path, required) THEN
        RETURN NULL;
    END IF;
    s := CASE WHEN jsonb_typeof(p -> k) = 'string' THEN p ->> k END;
    IF s IS NULL OR s !~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}$' THEN
        PERFORM fl_fail('invalid_params', path || k || ' must be a date written YYYY-MM-DD');
    END IF;
    BEGIN
        d := s::date;
    EXCEPTION WHEN others THEN
        PERFORM fl_fail('invalid_params', format('%s%s: %s is not a valid date', path, k, s));
    END;
    IF d < DATE '2000-01-01' OR d > DATE '2199-12-31' THEN
        PERFORM fl_fail('invalid_params',
                        path || k || ' must be between 2000-01-01 and 2199-12-31');
    END IF;
    RETURN d;
END
$$;

-- A time of day written HH:MM (24-hour clock).
CREATE FUNCTION fl_p_hhmm(p jsonb, k text, path text, required boolean) RETURNS time
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    s text := fl_p_match(p, k, path, required, '^([01][0-9]|2[0-3]):[0-5][0-9]$',
                         'a time of day written HH:MM (e.g. "03:00")');
BEGIN
    RETURN s::time;
END
$$;

CREATE FUNCTION fl_p_object(p jsonb, k text, path text, required boolean) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF fl_p_missing(p, k, path, required) THEN
        RETURN NULL;
    END IF;
    IF jsonb_typeof(p -> k) <> 'object' THEN
        PERFORM fl_fail('invalid_params', path || k || ' must be an object');
    END IF;
    RETURN p -> k;
END
$$;

CREATE FUNCTION fl_p_array(p jsonb, k text, path text, required boolean) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF fl_p_missing(p, k, path, required) THEN
        RETURN NULL;
    END IF;
    IF jsonb_typeof(p -> k) <> 'array' THEN
        PERFORM fl_fail('invalid_params', path || k || ' must be an array');
    END IF;
    RETURN p -> k;
END
$$;

-- Merges the members of patch into obj; a member set to null in patch is removed.
CREATE FUNCTION fl_jsonb_merge(obj jsonb, patch jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT (obj || patch) - coalesce((SELECT array_agg(e.key) FROM jsonb_each(patch) AS e
                                       WHERE jsonb_typeof(e.value) = 'null'), '{}'::text[])
$$;

-- The members that differ between two versions of an object, as {"field": {"from", "to"}},
-- leaving out the bookkeeping members that change on every update.
CREATE FUNCTION fl_diff(old jsonb, new jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce(jsonb_object_agg(t.k, jsonb_build_object('from', old -> t.k, 'to', new -> t.k)),
                    '{}'::jsonb)
      FROM (SELECT jsonb_object_keys(old) UNION SELECT jsonb_object_keys(new)) AS t(k)
     WHERE t.k NOT IN ('updated_at', 'updated_by')
       AND (old -> t.k) IS DISTINCT FROM (new -> t.k)
$$;

-- ---------------------------------------------------------------------------------------------
-- The caller's context, built by the daemon:
-- {"user_id", "user", "role", "property_id" (null = all properties), "outlet_id"}
-- ---------------------------------------------------------------------------------------------

CREATE FUNCTION fl_actor(ctx jsonb) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce(nullif(btrim(ctx ->> 'user'), ''), 'system')
$$;

CREATE FUNCTION fl_ctx_property(ctx jsonb) RETURNS bigint
LANGUAGE sql IMMUTABLE AS $$
    SELECT (ctx ->> 'property_id')::bigint
$$;

-- Trigger function for append-only tables (the change log now, postings later).
CREATE FUNCTION fl_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = 'FL000', MESSAGE = 'immutable',
        DETAIL = format('rows of %s are never updated or deleted', TG_TABLE_NAME);
END
$$;

CREATE FUNCTION fl_valid_timezone(tz text) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT EXISTS (SELECT 1 FROM pg_timezone_names WHERE name = tz)
$$;

-- ---------------------------------------------------------------------------------------------
-- Tables
-- ---------------------------------------------------------------------------------------------

-- One hotel. business_date is the open accounting day; only the night audit moves it.
CREATE TABLE properties (
    id            bigserial PRIMARY KEY,
    code          text NOT NULL UNIQUE CHECK (code ~ '^[A-Z0-9][A-Z0-9_-]{0,15}$'),
    name          text NOT NULL CHECK (btrim(name) <> ''),
    currency      char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    minor_units   integer NOT NULL DEFAULT 2 CHECK (minor_units BETWEEN 0 AND 4),
    timezone      text NOT NULL,
    business_date date NOT NULL,
    audit_time    time NOT NULL DEFAULT '03:00',
    settings      jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(settings) = 'object'),
    created_at    timestamptz NOT NULL DEFAULT now(),
    created_by    text NOT NULL DEFAULT current_user,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    updated_by    text NOT NULL DEFAULT current_user
);

CREATE FUNCTION fl_properties_check() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT fl_valid_timezone(NEW.timezone) THEN
        PERFORM fl_fail('invalid_params',
                        format('timezone "%s" is not a known time zone name (e.g. "Europe/Paris")',
                               NEW.timezone));
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER properties_check BEFORE INSERT OR UPDATE OF timezone ON properties
    FOR EACH ROW EXECUTE FUNCTION fl_properties_check();

CREATE TABLE rooms (
    id          bigserial PRIMARY KEY,
    property_id bigint NOT NULL REFERENCES properties (id),
    number      text NOT NULL CHECK (number ~ '^[A-Za-z0-9][A-Za-z0-9_-]{0,15}$'),
    room_type   text NOT NULL CHECK (room_type ~ '^[A-Z0-9][A-Z0-9_-]{0,15}$'),
    floor       integer CHECK (floor BETWEEN -10 AND 300),
    status      text NOT NULL DEFAULT 'vacant_clean'
                CHECK (status IN ('vacant_clean', 'vacant_dirty', 'occupied_clean',
                                  'occupied_dirty', 'out_of_order')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    created_by  text NOT NULL DEFAULT current_user,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    updated_by  text NOT NULL DEFAULT current_user,
    UNIQUE (property_id, number),
    -- lets later tables (stays) reference a room of the same property with one foreign key
    UNIQUE (property_id, id)
);

-- kind: charge (revenue), payment (credit), tax and service (generated by a charge's rules).
-- department groups charges in the revenue report (rooms, food, beverage...).
CREATE TABLE trx_codes (
    id             bigserial PRIMARY KEY,
    property_id    bigint NOT NULL REFERENCES properties (id),
    code           text NOT NULL CHECK (code ~ '^[A-Z0-9][A-Z0-9_-]{0,15}$'),
    description    text NOT NULL CHECK (btrim(description) <> ''),
    department     text NOT NULL CHECK (department ~ '^[a-z][a-z0-9_]{0,31}$'),
    kind           text NOT NULL CHECK (kind IN ('charge', 'payment', 'tax', 'service')),
    payment_method text CHECK (payment_method IN ('cash', 'card', 'deposit', 'bank_transfer')),
    enabled        boolean NOT NULL DEFAULT true,
    created_at     timestamptz NOT NULL DEFAULT now(),
    created_by     text NOT NULL DEFAULT current_user,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    updated_by     text NOT NULL DEFAULT current_user,
    UNIQUE (property_id, code),
    UNIQUE (property_id, id),
    CHECK ((kind = 'payment') = (payment_method IS NOT NULL))
);

-- Postings will reference codes by id and report them by code and kind: those never change.
CREATE FUNCTION fl_trx_codes_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.property_id <> OLD.property_id OR NEW.code <> OLD.code OR NEW.kind <> OLD.kind THEN
        PERFORM fl_fail('invalid_params',
                        'the code, kind and property of a transaction code never change; '
                        'create a new code instead');
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER trx_codes_guard BEFORE UPDATE ON trx_codes
    FOR EACH ROW EXECUTE FUNCTION fl_trx_codes_guard();

-- The tax and service rules of a charge code, applied in seq order (see fl_code_split).
CREATE TABLE trx_code_rules (
    id                bigserial PRIMARY KEY,
    property_id       bigint NOT NULL,
    code_id           bigint NOT NULL,
    seq               integer NOT NULL CHECK (seq BETWEEN 1 AND 16),
    generated_code_id bigint NOT NULL,
    rate_ppm          integer NOT NULL CHECK (rate_ppm BETWEEN 0 AND 1000000),
    inclusive         boolean NOT NULL DEFAULT false,
    compound          boolean NOT NULL DEFAULT false,
    UNIQUE (code_id, seq),
    UNIQUE (code_id, generated_code_id),
    FOREIGN KEY (property_id, code_id) REFERENCES trx_codes (property_id, id) ON DELETE CASCADE,
    FOREIGN KEY (property_id, generated_code_id) REFERENCES trx_codes (property_id, id),
    CHECK (generated_code_id <> code_id),
    -- an inclusive amount is carved out of the charge, so it has no base to compound on
    CHECK (NOT (inclusive AND compound))
);

CREATE INDEX trx_code_rules_generated ON trx_code_rules (generated_code_id);

CREATE FUNCTION fl_trx_code_rules_check() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM trx_codes c WHERE c.id = NEW.code_id AND c.kind = 'charge') THEN
        PERFORM fl_fail('invalid_params', 'only charge codes have tax and service rules');
    END IF;
    IF NOT EXISTS (SELECT 1 FROM trx_codes c
                    WHERE c.id = NEW.generated_code_id AND c.kind IN ('tax', 'service')) THEN
        PERFORM fl_fail('invalid_params', 'a rule generates a tax or service code');
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER trx_code_rules_check BEFORE INSERT OR UPDATE ON trx_code_rules
    FOR EACH ROW EXECUTE FUNCTION fl_trx_code_rules_check();

-- A POS outlet. It is identified by its client certificate: by fingerprint when one is set,
-- else by the certificate's subject CN (see auth_outlet_lookup). policy is documented in
-- docs/schema.md; the API stores it complete, with every key.
CREATE TABLE outlets (
    id               bigserial PRIMARY KEY,
    property_id      bigint NOT NULL REFERENCES properties (id),
    code             text NOT NULL CHECK (code ~ '^[A-Z0-9][A-Z0-9_-]{0,15}$'),
    name             text NOT NULL CHECK (btrim(name) <> ''),
    cert_fingerprint text UNIQUE CHECK (cert_fingerprint ~ '^[0-9a-f]{64}$'),
    cert_cn          text CHECK (cert_cn <> '' AND length(cert_cn) <= 64),
    enabled          boolean NOT NULL DEFAULT true,
    policy           jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(policy) = 'object'),
    created_at       timestamptz NOT NULL DEFAULT now(),
    created_by       text NOT NULL DEFAULT current_user,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    updated_by       text NOT NULL DEFAULT current_user,
    UNIQUE (property_id, code),
    UNIQUE (property_id, id)
);

-- A CN identifies an outlet only when the outlet has no fingerprint: it must then be unique.
CREATE UNIQUE INDEX outlets_cert_cn ON outlets (cert_cn)
    WHERE cert_fingerprint IS NULL AND cert_cn IS NOT NULL;

-- Staff accounts. property_id NULL = every property. password_hash is made by the daemon.
CREATE TABLE users (
    id            bigserial PRIMARY KEY,
    username      text NOT NULL UNIQUE CHECK (username ~ '^[a-z0-9][a-z0-9._@-]{0,63}$'),
    password_hash text NOT NULL CHECK (password_hash ~ '^\S+$' AND length(password_hash) <= 1024),
    role          text NOT NULL CHECK (role IN ('cashier', 'auditor', 'manager', 'admin')),
    property_id   bigint REFERENCES properties (id),
    full_name     text CHECK (btrim(full_name) <> ''),
    enabled       boolean NOT NULL DEFAULT true,
    created_at    timestamptz NOT NULL DEFAULT now(),
    created_by    text NOT NULL DEFAULT current_user,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    updated_by    text NOT NULL DEFAULT current_user
);

CREATE INDEX users_property ON users (property_id);

-- Who changed what and when, for every mutation made through the API. Append-only.
CREATE TABLE change_log (
    id          bigserial PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    actor       text NOT NULL,
    property_id bigint REFERENCES properties (id),
    entity      text NOT NULL,
    entity_id   bigint,
    action      text NOT NULL,
    detail      jsonb NOT NULL DEFAULT '{}'
);

CREATE INDEX change_log_entity ON change_log (entity, entity_id);
CREATE INDEX change_log_property_at ON change_log (property_id, at);

CREATE TRIGGER change_log_append_only BEFORE UPDATE OR DELETE ON change_log
    FOR EACH ROW EXECUTE FUNCTION fl_refuse_change();
CREATE TRIGGER change_log_no_truncate BEFORE TRUNCATE ON change_log
    FOR EACH STATEMENT EXECUTE FUNCTION fl_refuse_change();

-- ---------------------------------------------------------------------------------------------
-- Property scope and the change log
-- ---------------------------------------------------------------------------------------------

-- The property with this code, if the caller may touch it. A caller bound to one property gets
-- forbidden for any other code, whether it exists or not.
CREATE FUNCTION fl_property_by_code(ctx jsonb, v_code text) RETURNS properties
LANGUAGE plpgsql STABLE AS $$
DECLARE
    r properties;
    scope bigint := fl_ctx_property(ctx);
BEGIN
    SELECT * INTO r FROM properties WHERE code = v_code;
    IF scope IS NOT NULL AND r.id IS DISTINCT FROM scope THEN
        PERFORM fl_fail('forbidden', format('you may not access property %s', v_code));
    END IF;
    IF NOT FOUND THEN
        PERFORM fl_fail('not_found', format('property %s does not exist', v_code));
    END IF;
    RETURN r;
END
$$;

-- The property a call works on: params "property" (a code) if given, else the caller's own
-- property, else the only property of the database; otherwise "property" is required.
CREATE FUNCTION fl_property_scope(ctx jsonb, p jsonb, path text DEFAULT '') RETURNS properties
LANGUAGE plpgsql STABLE AS $$
DECLARE
    r properties;
    scope bigint := fl_ctx_property(ctx);
    n bigint;
BEGIN
    IF NOT fl_p_missing(p, 'property', path, false) THEN
        RETURN fl_property_by_code(ctx, fl_p_code(p, 'property', path, true));
    END IF;
    IF scope IS NOT NULL THEN
        SELECT * INTO r FROM properties WHERE id = scope;
        IF NOT FOUND THEN
            PERFORM fl_fail('not_found', 'your property no longer exists');
        END IF;
        RETURN r;
    END IF;
    SELECT count(*) INTO n FROM properties;
    IF n = 1 THEN
        SELECT * INTO r FROM properties;
        RETURN r;
    END IF;
    PERFORM fl_fail('invalid_params', path || 'property is required (the code of a property)');
    RETURN NULL;
END
$$;

-- For list functions: the property id to filter on, or NULL for every property the caller sees
-- (then the caller is not bound to one property).
CREATE FUNCTION fl_property_filter(ctx jsonb, p jsonb) RETURNS bigint
LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF NOT fl_p_missing(p, 'property', '', false) THEN
        RETURN (fl_property_by_code(ctx, fl_p_code(p, 'property', '', true))).id;
    END IF;
    RETURN fl_ctx_property(ctx);
END
$$;

CREATE FUNCTION fl_property_code(v_id bigint) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT code FROM properties WHERE id = v_id
$$;

-- One change log entry. ctx "via" (e.g. "setup.import") is copied into the detail.
CREATE FUNCTION fl_log(ctx jsonb, v_property_id bigint, v_entity text, v_entity_id bigint,
                       v_action text, v_detail jsonb) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO change_log (actor, property_id, entity, entity_id, action, detail)
    VALUES (fl_actor(ctx), v_property_id, v_entity, v_entity_id, v_action,
            CASE WHEN ctx ? 'via'
                 THEN coalesce(v_detail, '{}') || jsonb_build_object('via', ctx -> 'via')
                 ELSE coalesce(v_detail, '{}') END)
$$;

-- ---------------------------------------------------------------------------------------------
-- Tax and service rules
-- ---------------------------------------------------------------------------------------------

-- Splits an amount posted on a charge code into the lines to post: seq 0 is the charge itself
-- (net of inclusive rules), then one line per rule in seq order.
--   inclusive rule: carved out of the amount: round(amount * rate / (1e6 + sum of inclusive
--                   rates)); the charge line keeps amount minus every inclusive line.
--   exclusive rule: added on top: round(base * rate / 1e6), base = the charge line's amount,
--                   or for a compound rule that plus every earlier rule's line.
-- Rounding is half away from zero, so a negative amount splits into the exact negation of the
-- positive one. The lines sum to amount plus the exclusive lines. Zero lines are returned too.
CREATE FUNCTION fl_code_split(v_code_id bigint, v_amount bigint)
RETURNS TABLE (seq integer, trx_code_id bigint, code text, kind text, amount bigint)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    incl_rates bigint;
    incl jsonb := '{}';
    net bigint := v_amount;
    running bigint;
    a bigint;
    r record;
BEGIN
    SELECT coalesce(sum(cr.rate_ppm), 0) INTO incl_rates
      FROM trx_code_rules cr WHERE cr.code_id = v_code_id AND cr.inclusive;
    FOR r IN SELECT cr.seq AS s, cr.rate_ppm AS rate
               FROM trx_code_rules cr
              WHERE cr.code_id = v_code_id AND cr.inclusive LOOP
        a := round(v_amount::numeric * r.rate / (1000000 + incl_rates));
        incl := incl || jsonb_build_object(r.s::text, a);
        net := net - a;
    END LOOP;

    SELECT 0, c.id, c.code, c.kind, net INTO seq, trx_code_id, code, kind, amount
      FROM trx_codes c WHERE c.id = v_code_id;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    RETURN NEXT;

    running := net;
    FOR r IN SELECT cr.seq AS s, cr.rate_ppm AS rate, cr.inclusive AS incl_rule,
                    cr.compound AS comp, g.id AS gid, g.code AS gcode, g.kind AS gkind
               FROM trx_code_rules cr JOIN trx_codes g ON g.id = cr.generated_code_id
              WHERE cr.code_id = v_code_id
              ORDER BY cr.seq LOOP
        IF r.incl_rule THEN
            a := (incl ->> r.s::text)::bigint;
        ELSE
            a := round((CASE WHEN r.comp THEN running ELSE net END)::numeric * r.rate / 1000000);
        END IF;
        running := running + a;
        seq := r.s;
        trx_code_id := r.gid;
        code := r.gcode;
        kind := r.gkind;
        amount := a;
        RETURN NEXT;
    END LOOP;
END
$$;
