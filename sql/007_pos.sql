-- 007_pos.sql - the POS interface (docs/pos.md): pos.hello, pos.inquiry, pos.post, pos.status
-- and pos.postings for outlets identified by their client certificate.
--
-- Every function returns a FIAS-shaped answer {"status", "reason", "message", ...} instead of
-- raising, so that a refusal is an answer like any other and can be stored for idempotency:
--   OK posted/found, NG guest not found, NP no-post, CO credit limit, DM total mismatch,
--   IA closed account, DN refused by policy, UR unprocessable (RY comes from the daemon).
-- A malformed message (UR invalid_request) is answered but not stored; everything pos.post
-- decides after it has claimed its idempotency key is stored in pos_requests in the same
-- transaction as the postings, and the daemon sends the answer only after the commit.
--
-- Tables: pos_requests (the idempotency store, one row per outlet and key, kept as long as
-- the postings), pos_inquiries (what each outlet asked: inquiry before post, the rate limit of
-- name searches). Helpers: fl_fold() (names compared without case or accents), fl_pos_*().
-- The postings themselves go through the engine of 004 (fl_post_charge), so taxes, service,
-- routing and the business-date rules are the same as at the front desk.
--
-- Applied once by the migrate command inside one transaction; never edited once landed.

-- ---------------------------------------------------------------------------------------------
-- Names
-- ---------------------------------------------------------------------------------------------

-- A name folded for comparison: Latin letters without accents ("Müller" -> "muller",
-- "Łukasz" -> "lukasz", "Straße" -> "strasse"), lower case, apostrophes dropped ("O'Brien" ->
-- "obrien"), runs of spaces, hyphens, commas, dots and slashes made one space, trimmed.
-- Letters of other scripts are kept as they are.
CREATE FUNCTION fl_fold(v text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT btrim(regexp_replace(
        lower(translate(
            replace(replace(replace(replace(replace(replace(v, 'ß', 'ss'), 'Æ', 'AE'), 'æ', 'ae'),
                                    'Œ', 'OE'), 'œ', 'oe'), 'ẞ', 'SS'),
            'ÀÁÂÃÄÅÇÈÉÊËÌÍÎÏÑÒÓÔÕÖÙÚÛÜÝàáâãäåçèéêëìíîïñòóôõöùúûüýÿĀāĂ'
            || 'ăĄąĆćĈĉĊċČčĎďĒēĔĕĖėĘęĚěĜĝĞğĠġĢģĤĥĨĩĪīĬĭĮįİĴĵĶķĹĺĻļĽľŃńŅņ'
            || 'ŇňŌōŎŏŐőŔŕŖŗŘřŚśŜŝŞşŠšŢţŤťŨũŪūŬŭŮůŰűŲųŴŵŶŷŸŹźŻżŽžƠơƯưǍǎǏ'
            || 'ǐǑǒǓǔǕǖǗǘǙǚǛǜǞǟǠǡǦǧǨǩǪǫǬǭǰǴǵǸǹǺǻȀȁȂȃȄȅȆȇȈȉȊȋȌȍȎȏȐȑȒȓȔȕȖȗ'
            || 'ȘșȚțȞȟȦȧȨȩȪȫȬȭȮȯȰȱȲȳØøĐđĦħŁłıŦŧĿŀ''’',
            'AAAAAACEEEEIIIINOOOOOUUUUYaaaaaaceeeeiiiinooooouuuuyyAaA'
            || 'aAaCcCcCcCcDdEeEeEeEeEeGgGgGgGgHhIiIiIiIiIJjKkLlLlLlNnNn'
            || 'NnOoOoOoRrRrRrSsSsSsSsTtTtUuUuUuUuUuUuWwYyYZzZzZzOoUuAaI'
            || 'iOoUuUuUuUuUuAaAaGgKkOoOojGgNnAaAaAaEeEeIiIiOoOoRrRrUuUu'
            || 'SsTtHhAaEeOoOoOoOoYyOoDdHhLliTtLl')),
        '[[:space:],./-]+', ' ', 'g'))
$$;

-- Whether the name a POS sent designates this guest: the folded name equals the folded
-- surname, or "surname first-name", or "first-name surname".
CREATE FUNCTION fl_pos_name_matches(v_given text, g guests) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT fl_fold(v_given) <> ''
       AND fl_fold(v_given) IN (fl_fold(g.last_name),
                                fl_fold(g.last_name || ' ' || g.first_name),
                                fl_fold(g.first_name || ' ' || g.last_name))
$$;

-- ---------------------------------------------------------------------------------------------
-- Tables
-- ---------------------------------------------------------------------------------------------

-- The idempotency store: one row per outlet and key. pos.post claims the key first (the unique
-- index makes a concurrent request with the same key wait for the first one's commit), then
-- stores its final answer in the same transaction as its postings. params keeps the whole
-- request (covers, table, items) for audit; body_hash is the SHA-256 of its canonical jsonb
-- text. Rows are never deleted: a key lives as long as the postings it made. The answer is
-- written once; nothing else ever changes.
CREATE TABLE pos_requests (
    id            bigserial PRIMARY KEY,
    property_id   bigint NOT NULL REFERENCES properties (id),
    outlet_id     bigint NOT NULL,
    key           text NOT NULL CHECK (length(key) BETWEEN 1 AND 64),
    body_hash     text NOT NULL CHECK (body_hash ~ '^[0-9a-f]{64}$'),
    params        jsonb NOT NULL,
    status        text CHECK (status IN ('OK', 'NG', 'NP', 'CO', 'DM', 'IA', 'DN', 'NA', 'UR')),
    reason        text,
    answer        jsonb,
    business_date date,
    stay_id       bigint,
    total         bigint NOT NULL DEFAULT 0,
    posting_ids   bigint[] NOT NULL DEFAULT '{}',
    created_at    timestamptz NOT NULL DEFAULT now(),
    answered_at   timestamptz,
    UNIQUE (outlet_id, key),
    FOREIGN KEY (property_id, outlet_id) REFERENCES outlets (property_id, id),
    FOREIGN KEY (property_id, stay_id) REFERENCES stays (property_id, id),
    CHECK ((answer IS NULL) = (status IS NULL)),
    CHECK ((answer IS NULL) = (answered_at IS NULL)),
    CHECK (status = 'OK' OR (total = 0 AND posting_ids = '{}'))
);

-- the day's sum of an outlet's postings (max_per_day) and pos.postings
CREATE INDEX pos_requests_day ON pos_requests (outlet_id, business_date) WHERE status = 'OK';

CREATE FUNCTION fl_pos_requests_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.answer IS NOT NULL OR NEW.answer IS NULL
       OR (NEW.id, NEW.property_id, NEW.outlet_id, NEW.key, NEW.body_hash, NEW.params,
           NEW.created_at)
          IS DISTINCT FROM (OLD.id, OLD.property_id, OLD.outlet_id, OLD.key, OLD.body_hash,
                            OLD.params, OLD.created_at) THEN
        PERFORM fl_fail('immutable', 'a POS request gets its answer once and never changes');
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER pos_requests_guard BEFORE UPDATE ON pos_requests
    FOR EACH ROW EXECUTE FUNCTION fl_pos_requests_guard();
CREATE TRIGGER pos_requests_no_delete BEFORE DELETE ON pos_requests
    FOR EACH ROW EXECUTE FUNCTION fl_refuse_change();
CREATE TRIGGER pos_requests_no_truncate BEFORE TRUNCATE ON pos_requests
    FOR EACH STATEMENT EXECUTE FUNCTION fl_refuse_change();

-- What an outlet asked and which stays the answer listed. Read for inquiry_required (an
-- inquiry that listed the stay in the last 30 minutes) and for the rate limit of name searches
-- (30 a minute per outlet). Rows older than 30 days are purged by the outlet's next inquiry.
CREATE TABLE pos_inquiries (
    id          bigserial PRIMARY KEY,
    property_id bigint NOT NULL REFERENCES properties (id),
    outlet_id   bigint NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('room', 'name')),
    query       text NOT NULL,
    status      text NOT NULL,
    stay_ids    bigint[] NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (property_id, outlet_id) REFERENCES outlets (property_id, id)
);

CREATE INDEX pos_inquiries_outlet ON pos_inquiries (outlet_id, created_at);

-- ---------------------------------------------------------------------------------------------
-- Helpers
-- ---------------------------------------------------------------------------------------------

-- How long an inquiry counts for inquiry_required, and the name-search rate limit.
CREATE FUNCTION fl_pos_inquiry_validity() RETURNS interval
LANGUAGE sql IMMUTABLE AS $$ SELECT interval '30 minutes' $$;
CREATE FUNCTION fl_pos_name_searches_per_minute() RETURNS integer
LANGUAGE sql IMMUTABLE AS $$ SELECT 30 $$;
CREATE FUNCTION fl_pos_max_matches() RETURNS integer
LANGUAGE sql IMMUTABLE AS $$ SELECT 9 $$;

CREATE FUNCTION fl_pos_answer(v_status text, v_reason text, v_message text,
                              v_extra jsonb DEFAULT '{}') RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_build_object('status', v_status, 'reason', v_reason, 'message', v_message)
           || coalesce(v_extra, '{}'::jsonb)
$$;

-- The calling outlet (ctx.outlet_id, set by the daemon from the client certificate). Anything
-- but an outlet gets forbidden: the daemon's method table already refuses staff.
CREATE FUNCTION fl_pos_outlet(ctx jsonb) RETURNS outlets
LANGUAGE plpgsql STABLE AS $$
DECLARE
    o outlets;
BEGIN
    IF fl_ctx_role(ctx) IS DISTINCT FROM 'outlet' OR (ctx ->> 'outlet_id') IS NULL THEN
        PERFORM fl_fail('forbidden', 'the POS methods are for outlets (client certificates)');
    END IF;
    SELECT * INTO o FROM outlets WHERE id = (ctx ->> 'outlet_id')::bigint;
    IF NOT FOUND OR o.property_id IS DISTINCT FROM fl_ctx_property(ctx) THEN
        PERFORM fl_fail('forbidden', 'this outlet no longer exists');
    END IF;
    RETURN o;
END
$$;

CREATE FUNCTION fl_pos_policy(o outlets) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT fl_outlet_policy_defaults() || o.policy
$$;

-- The answer to an outlet disabled while it was connected (the daemon refuses a disabled
-- outlet's certificate at connect time). Not stored: once enabled again the same key works.
CREATE FUNCTION fl_pos_disabled(o outlets) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT fl_pos_answer('DN', 'outlet_disabled',
                         format('outlet %s is disabled; ask the front office', o.code))
$$;

-- A malformed message (UR invalid_request) from the FL000 error a parameter check raised.
CREATE FUNCTION fl_pos_invalid(v_detail text) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT fl_pos_answer('UR', 'invalid_request', coalesce(nullif(v_detail, ''),
                                                           'invalid request'))
$$;

-- The property's tip code: settings.tip_code, default "TIP".
CREATE FUNCTION fl_pos_tip_code(prop properties) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce(prop.settings ->> 'tip_code', 'TIP')
$$;

-- Credit a POS may see: the limit minus the stay's balance (all windows); null = no limit.
CREATE FUNCTION fl_pos_credit_available(s stays) RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN s.credit_limit IS NULL THEN NULL
                ELSE s.credit_limit - (SELECT coalesce(sum(f.balance), 0) FROM folios f
                                        WHERE f.stay_id = s.id) END
$$;

-- One guest as pos.inquiry lists it.
CREATE FUNCTION fl_pos_guest_json(s stays, v_may_see_credit boolean) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'stay_id', s.id, 'reservation', s.number, 'room', r.number,
        'last_name', g.last_name, 'first_name', g.first_name,
        'arrival', s.arrival, 'departure', s.departure, 'status', s.status,
        'no_post', s.no_post)
        || CASE WHEN s.status = 'checked_out'
                THEN jsonb_build_object('checked_out_at', s.checked_out_at) ELSE '{}' END
        || CASE WHEN v_may_see_credit
                THEN jsonb_build_object('credit_available', fl_pos_credit_available(s))
                ELSE '{}' END
      FROM rooms r, guests g
     WHERE r.id = s.room_id AND g.id = s.guest_id
$$;

-- Whether a checked-out stay is still within the outlet's late-charge window.
CREATE FUNCTION fl_pos_late_ok(s stays, v_hours integer) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT s.status = 'checked_out' AND v_hours > 0
       AND s.checked_out_at > now() - make_interval(hours => v_hours)
$$;

-- A time for a person, in the property's time zone.
CREATE FUNCTION fl_pos_local_time(v_at timestamptz, prop properties) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT to_char(v_at AT TIME ZONE prop.timezone, 'YYYY-MM-DD HH24:MI')
$$;

-- Stores the final answer of a claimed request and returns it.
CREATE FUNCTION fl_pos_store(v_req bigint, v_answer jsonb, v_business_date date,
                             v_stay_id bigint DEFAULT NULL, v_total bigint DEFAULT 0,
                             v_posting_ids bigint[] DEFAULT '{}') RETURNS jsonb
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE pos_requests
       SET status = v_answer ->> 'status', reason = v_answer ->> 'reason', answer = v_answer,
           business_date = v_business_date, stay_id = v_stay_id, total = coalesce(v_total, 0),
           posting_ids = coalesce(v_posting_ids, '{}'), answered_at = now()
     WHERE id = v_req;
    RETURN v_answer;
END
$$;

-- The tax and service rules of a charge code as pos.hello shows them: with the kind (tax or
-- service) of each generated code, so that a POS can split tax from service itself.
CREATE FUNCTION fl_pos_rules_json(v_code_id bigint) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT coalesce(jsonb_agg(jsonb_build_object(
                        'seq', cr.seq, 'code', g.code, 'kind', g.kind, 'rate_ppm', cr.rate_ppm,
                        'inclusive', cr.inclusive, 'compound', cr.compound) ORDER BY cr.seq),
                    '[]'::jsonb)
      FROM trx_code_rules cr JOIN trx_codes g ON g.id = cr.generated_code_id
     WHERE cr.code_id = v_code_id
$$;

-- ---------------------------------------------------------------------------------------------
-- pos.hello
-- ---------------------------------------------------------------------------------------------

-- The outlet's identity, its property, the business date, its policy, and the codes it may
-- post with their tax and service rules (so that a POS can compute the total it must send).
CREATE FUNCTION api_pos_hello(ctx jsonb, p jsonb) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
    o outlets := fl_pos_outlet(ctx);
    pol jsonb := fl_pos_policy(o);
    prop properties;
BEGIN
    IF NOT o.enabled THEN
        RETURN fl_pos_disabled(o);
    END IF;
    SELECT * INTO prop FROM properties WHERE id = o.property_id;
    RETURN fl_pos_answer('OK', 'linked',
                         format('outlet %s (%s) of %s, business date %s', o.code, o.name,
                                prop.name, prop.business_date),
        jsonb_build_object(
            'outlet', jsonb_build_object('code', o.code, 'name', o.name),
            'property', jsonb_build_object('code', prop.code, 'name', prop.name,
                                           'currency', prop.currency,
                                           'minor_units', prop.minor_units,
                                           'timezone', prop.timezone),
            'business_date', prop.business_date,
            'time', now(),
            'policy', pol,
            'tip_code', CASE WHEN fl_pos_tip_code(prop) IN
                                  (SELECT jsonb_array_elements_text(pol -> 'allowed_codes'))
                             THEN fl_pos_tip_code(prop) END,
            'codes', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                                          'code', c.code, 'description', c.description,
                                          'department', c.department,
                                          'rules', fl_pos_rules_json(c.id)) ORDER BY c.code),
                                      '[]'::jsonb)
                        FROM trx_codes c
                       WHERE c.property_id = o.property_id AND c.kind = 'charge' AND c.enabled
                         AND c.code IN (SELECT jsonb_array_elements_text(
                                            pol -> 'allowed_codes')))));
END
$$;

-- ---------------------------------------------------------------------------------------------
-- pos.inquiry
-- ---------------------------------------------------------------------------------------------

-- {"room": "201"} or {"name": "lovel"} (a surname prefix, folded; at least 2 letters). Lists
-- the in-house stays (several guests in one room each listed) and, for an outlet that takes
-- late charges, the stays checked out within its window. At most 9 by name ("truncated": true
-- when more match). Name searches: 30 a minute per outlet (DN rate_limited). Every inquiry
-- answered is recorded in pos_inquiries.
CREATE FUNCTION api_pos_inquiry(ctx jsonb, p jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    o outlets := fl_pos_outlet(ctx);
    pol jsonb;
    prop properties;
    v_room text;
    v_name text;
    v_folded text;
    v_hours integer;
    rm rooms;
    ids bigint[];
    answer jsonb;
    v_more boolean := false;
    v_detail text;
    n integer;
BEGIN
    IF NOT o.enabled THEN
        RETURN fl_pos_disabled(o);
    END IF;
    BEGIN
        p := fl_params(p);
        PERFORM fl_check_keys(p, ARRAY['room', 'name'], '');
        v_room := fl_p_room_number(p, 'room', '', false);
        v_name := fl_p_text(p, 'name', '', false, 64);
        IF (v_room IS NULL) = (v_name IS NULL) THEN
            PERFORM fl_fail('invalid_params', 'give either room or name');
        END IF;
        IF v_name IS NOT NULL AND length(replace(fl_fold(v_name), ' ', '')) < 2 THEN
            PERFORM fl_fail('invalid_params', 'name must have at least 2 letters');
        END IF;
    EXCEPTION WHEN SQLSTATE 'FL000' THEN
        GET STACKED DIAGNOSTICS v_detail = PG_EXCEPTION_DETAIL;
        RETURN fl_pos_invalid(v_detail);
    END;
    pol := fl_pos_policy(o);
    v_hours := (pol ->> 'late_charge_hours')::integer;
    SELECT * INTO prop FROM properties WHERE id = o.property_id;

    IF v_room IS NOT NULL THEN
        SELECT * INTO rm FROM rooms WHERE property_id = o.property_id AND number = v_room;
        IF NOT FOUND THEN
            answer := fl_pos_answer('NG', 'unknown_room',
                                    format('room %s does not exist', v_room));
        ELSE
            SELECT coalesce(array_agg(s.id ORDER BY s.status DESC, s.id), '{}') INTO ids
              FROM stays s
             WHERE s.room_id = rm.id AND (s.status = 'in_house' OR fl_pos_late_ok(s, v_hours));
            IF cardinality(ids) = 0 THEN
                answer := fl_pos_answer('NG', 'not_in_house',
                                        format('no guest in house in room %s', v_room));
            END IF;
        END IF;
    ELSE
        -- name searches are rate-limited per outlet; the lock makes the count exact
        PERFORM 1 FROM outlets WHERE id = o.id FOR NO KEY UPDATE;
        SELECT count(*) INTO n FROM pos_inquiries
         WHERE outlet_id = o.id AND kind = 'name' AND created_at > now() - interval '1 minute';
        IF n >= fl_pos_name_searches_per_minute() THEN
            RETURN fl_pos_answer('DN', 'rate_limited',
                                 format('more than %s name searches in a minute: wait, or '
                                        'inquire by room', fl_pos_name_searches_per_minute()));
        END IF;
        v_folded := fl_fold(v_name);
        SELECT coalesce(array_agg(x.id ORDER BY x.ord), '{}') INTO ids
          FROM (SELECT s.id, row_number() OVER (ORDER BY fl_fold(g.last_name),
                                                         fl_fold(g.first_name), r.number,
                                                         s.id) AS ord
                  FROM stays s JOIN guests g ON g.id = s.guest_id JOIN rooms r ON r.id = s.room_id
                 WHERE s.property_id = o.property_id
                   AND (s.status = 'in_house' OR fl_pos_late_ok(s, v_hours))
                   AND starts_with(fl_fold(g.last_name), v_folded)
                 ORDER BY 2 LIMIT fl_pos_max_matches() + 1) AS x;
        IF cardinality(ids) > fl_pos_max_matches() THEN
            v_more := true;
            ids := ids[1:fl_pos_max_matches()];
        END IF;
        IF cardinality(ids) = 0 THEN
            answer := fl_pos_answer('NG', 'not_in_house',
                                    format('no guest in house whose name begins with "%s"',
                                           v_name));
        END IF;
    END IF;

    IF answer IS NULL THEN
        answer := fl_pos_answer('OK', 'found',
                                format('%s guest(s) found%s', cardinality(ids),
                                       CASE WHEN v_more THEN format(' (more than %s match: '
                                                                    'give more letters)',
                                                                    fl_pos_max_matches())
                                            ELSE '' END),
            jsonb_build_object(
                'guests', (SELECT jsonb_agg(fl_pos_guest_json(s, (pol ->> 'may_see_credit')
                                                                 ::boolean)
                                            ORDER BY array_position(ids, s.id))
                             FROM stays s WHERE s.id = ANY (ids)),
                'count', cardinality(ids), 'truncated', v_more));
    END IF;
    DELETE FROM pos_inquiries
     WHERE outlet_id = o.id AND created_at < now() - interval '30 days';
    INSERT INTO pos_inquiries (property_id, outlet_id, kind, query, status, stay_ids)
    VALUES (o.property_id, o.id, CASE WHEN v_room IS NOT NULL THEN 'room' ELSE 'name' END,
            coalesce(v_room, v_name), answer ->> 'status', coalesce(ids, '{}'));
    RETURN answer;
END
$$;

-- ---------------------------------------------------------------------------------------------
-- pos.post
-- ---------------------------------------------------------------------------------------------

-- The stay a posting is for: stay_id when given (it must be in that room), else the one
-- in-house stay of the room, else the one stay of the room checked out within the outlet's
-- late-charge window, else the stay that left the room on the open business date (so that the
-- answer can say checked_out or late_charge_window). stay_id NULL with an answer: a refusal.
CREATE FUNCTION fl_pos_find_stay(o outlets, prop properties, v_room text, v_stay bigint,
                                 v_hours integer, OUT stay_id bigint, OUT answer jsonb)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    rm rooms;
    ids bigint[];
BEGIN
    SELECT * INTO rm FROM rooms WHERE property_id = o.property_id AND number = v_room;
    IF NOT FOUND THEN
        answer := fl_pos_answer('NG', 'unknown_room', format('room %s does not exist', v_room));
        RETURN;
    END IF;
    IF v_stay IS NOT NULL THEN
        SELECT s.id INTO stay_id FROM stays s
         WHERE s.id = v_stay AND s.property_id = o.property_id AND s.room_id = rm.id;
        IF stay_id IS NULL THEN
            answer := fl_pos_answer('NG', 'not_in_house',
                                    format('stay %s is not a guest of room %s', v_stay, v_room));
        END IF;
        RETURN;
    END IF;
    SELECT coalesce(array_agg(s.id ORDER BY s.id), '{}') INTO ids FROM stays s
     WHERE s.room_id = rm.id AND s.status = 'in_house';
    IF cardinality(ids) = 0 THEN
        SELECT coalesce(array_agg(s.id ORDER BY s.id), '{}') INTO ids FROM stays s
         WHERE s.room_id = rm.id AND fl_pos_late_ok(s, v_hours);
    END IF;
    IF cardinality(ids) > 1 THEN
        answer := fl_pos_answer('NG', 'stay_required',
                                format('%s guests are in room %s: give the stay_id of one of them '
                                       '(pos.inquiry lists them)', cardinality(ids), v_room),
                                jsonb_build_object('guests', cardinality(ids)));
        RETURN;
    END IF;
    IF cardinality(ids) = 1 THEN
        stay_id := ids[1];
        RETURN;
    END IF;
    SELECT s.id INTO stay_id FROM stays s
     WHERE s.room_id = rm.id AND s.status = 'checked_out' AND s.checkout_date = prop.business_date
     ORDER BY s.checked_out_at DESC, s.id DESC LIMIT 1;
    IF stay_id IS NULL THEN
        answer := fl_pos_answer('NG', 'not_in_house',
                                format('no guest in house in room %s', v_room));
    END IF;
END
$$;

-- {"key", "room", "stay_id", "guest_name", "check", "covers", "table", "subtotals":
--  [{"code", "amount"}], "tax", "service", "tip", "total", "items": [{"code", "name",
--  "quantity", "amount"}], "description"} -> the answer; docs/pos.md gives the order of the
-- checks and every answer.
CREATE FUNCTION api_pos_post(ctx jsonb, p jsonb) RETURNS jsonb
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
    sp record;
    rt record;
    item jsonb;
    path text;
    i integer;
    v_detail text;
    v_req bigint;
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

    -- 2. claim the key. A concurrent request with the same key waits here on the unique index
    -- until the first one commits, then finds its answer.
    v_hash := encode(sha256(convert_to(p::text, 'UTF8')), 'hex');
    INSERT INTO pos_requests (property_id, outlet_id, key, body_hash, params)
    VALUES (o.property_id, o.id, v_key, v_hash, p)
    ON CONFLICT (outlet_id, key) DO NOTHING
    RETURNING id INTO v_req;
    IF v_req IS NULL THEN
        SELECT * INTO r FROM pos_requests WHERE outlet_id = o.id AND key = v_key;
        IF r.body_hash <> v_hash THEN
            RETURN fl_pos_answer('UR', 'idempotency_key_reused',
                                 format('key %s was used for another request on %s: use a new '
                                        'key for a new posting', v_key,
                                        to_char(r.created_at, 'YYYY-MM-DD HH24:MI:SS TZ')),
                                 jsonb_build_object('key', v_key));
        END IF;
        RETURN r.answer || jsonb_build_object('replayed', true);
    END IF;

    -- this outlet's postings one at a time (max_per_day), then the property (the business
    -- date cannot close under us), then the stay: the lock order of 004
    SELECT * INTO o FROM outlets WHERE id = o.id FOR NO KEY UPDATE;
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
            RETURN fl_pos_store(v_req, fl_pos_answer('DN', 'code_not_allowed',
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
        parts := jsonb_set(parts, ARRAY[i::text],
                            grp || jsonb_build_object('code_id', c.id, 'total', sum_group));
    END LOOP;

    -- 4. the total equals the sum of its parts (DM)
    expected := jsonb_build_object('total', sum_lines, 'tax', sum_tax, 'service', sum_service,
                                   'tip', v_tip, 'charges', sum_charges);
    IF v_tax IS NOT NULL AND v_tax <> sum_tax THEN
        RETURN fl_pos_store(v_req, fl_pos_answer('DM', 'tax_mismatch',
            format('tax %s does not equal the tax of the subtotals, %s', fl_money(v_tax, mu),
                   fl_money(sum_tax, mu)),
            jsonb_build_object('key', v_key, 'expected', expected)), prop.business_date);
    END IF;
    IF v_service IS NOT NULL AND v_service <> sum_service THEN
        RETURN fl_pos_store(v_req, fl_pos_answer('DM', 'service_mismatch',
            format('service %s does not equal the service charge of the subtotals, %s',
                   fl_money(v_service, mu), fl_money(sum_service, mu)),
            jsonb_build_object('key', v_key, 'expected', expected)), prop.business_date);
    END IF;
    IF v_total <> sum_lines THEN
        RETURN fl_pos_store(v_req, fl_pos_answer('DM', 'total_mismatch',
            format('total %s does not equal the sum of its parts, %s (charges %s, service %s, '
                   'tax %s, tip %s)', fl_money(v_total, mu), fl_money(sum_lines, mu),
                   fl_money(sum_charges, mu), fl_money(sum_service, mu),
                   fl_money(sum_tax, mu), fl_money(v_tip, mu)),
            jsonb_build_object('key', v_key, 'expected', expected)), prop.business_date);
    END IF;

    -- 5. the outlet's limit per posting
    v_limit := (pol ->> 'max_per_posting')::bigint;
    IF v_limit IS NOT NULL AND v_total > v_limit THEN
        RETURN fl_pos_store(v_req, fl_pos_answer('DN', 'outlet_limit',
            format('total %s is over this outlet''s limit of %s per posting',
                   fl_money(v_total, mu), fl_money(v_limit, mu)),
            jsonb_build_object('key', v_key, 'limit', 'max_per_posting')), prop.business_date);
    END IF;

    -- 6. the guest
    found_stay := fl_pos_find_stay(o, prop, v_room, v_stay, v_hours);
    IF found_stay.answer IS NOT NULL THEN
        RETURN fl_pos_store(v_req, found_stay.answer || jsonb_build_object('key', v_key),
                            prop.business_date);
    END IF;
    SELECT * INTO s FROM stays WHERE id = found_stay.stay_id FOR NO KEY UPDATE;
    SELECT * INTO g FROM guests WHERE id = s.guest_id;
    IF s.status = 'checked_out' THEN
        IF v_hours = 0 THEN
            RETURN fl_pos_store(v_req, fl_pos_answer('NG', 'checked_out',
                format('the guest of room %s (stay %s) checked out at %s; this outlet posts no '
                       'late charges', v_room, s.number,
                       fl_pos_local_time(s.checked_out_at, prop)),
                jsonb_build_object('key', v_key)), prop.business_date, s.id);
        END IF;
        IF NOT fl_pos_late_ok(s, v_hours) THEN
            RETURN fl_pos_store(v_req, fl_pos_answer('DN', 'late_charge_window',
                format('the guest of room %s (stay %s) checked out at %s, more than %s hour(s) '
                       'ago: the front desk must post it', v_room, s.number,
                       fl_pos_local_time(s.checked_out_at, prop), v_hours),
                jsonb_build_object('key', v_key)), prop.business_date, s.id);
        END IF;
        v_late := true;
    END IF;

    -- 7. the name, when given or required (never telling which name was expected)
    IF v_name IS NULL AND (pol ->> 'name_match_required')::boolean THEN
        RETURN fl_pos_store(v_req, fl_pos_answer('NG', 'name_mismatch',
            'this outlet must send the guest''s name (guest_name)',
            jsonb_build_object('key', v_key)), prop.business_date, s.id);
    END IF;
    IF v_name IS NOT NULL AND NOT fl_pos_name_matches(v_name, g) THEN
        RETURN fl_pos_store(v_req, fl_pos_answer('NG', 'name_mismatch',
            format('the name "%s" does not match the guest of room %s', v_name, v_room),
            jsonb_build_object('key', v_key)), prop.business_date, s.id);
    END IF;

    -- 8. no-post
    IF s.no_post THEN
        RETURN fl_pos_store(v_req, fl_pos_answer('NP', 'no_post',
            format('postings to the guest of room %s are blocked (no-post): ask for another '
                   'payment', v_room),
            jsonb_build_object('key', v_key)), prop.business_date, s.id);
    END IF;

    -- 9. inquiry before post
    IF (pol ->> 'inquiry_required')::boolean
       AND NOT EXISTS (SELECT 1 FROM pos_inquiries q
                        WHERE q.outlet_id = o.id AND s.id = ANY (q.stay_ids)
                          AND q.created_at > now() - fl_pos_inquiry_validity()) THEN
        RETURN fl_pos_store(v_req, fl_pos_answer('DN', 'inquiry_required',
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
            RETURN fl_pos_store(v_req, fl_pos_answer('DN', 'outlet_limit',
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
        SELECT * INTO c FROM trx_codes WHERE id = (grp ->> 'code_id')::bigint;
        rt := fl_route_target(w1, c);
        reopen_w1 := reopen_w1 OR (rt.folio_id = w1.id AND w1.status <> 'open');
        IF rt.target_closed IS NOT NULL
           OR (rt.folio_id = w1.id AND w1.status <> 'open' AND NOT v_late) THEN
            RETURN fl_pos_store(v_req, fl_pos_answer('IA', 'folio_closed',
                format('the folio %s charges of %s for room %s go to is closed: the front desk '
                       'must post it', (SELECT f.number FROM folios f
                                         WHERE f.id = coalesce(rt.target_closed, w1.id)),
                       c.code, v_room),
                jsonb_build_object('key', v_key)), prop.business_date, s.id);
        END IF;
        -- 12. credit: what lands on each account (a stay's windows together, or a master)
        cpos := fl_credit_position(rt.folio_id);
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
            RETURN fl_pos_store(v_req, fl_pos_answer('CO', 'credit_limit',
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
        SELECT * INTO c FROM trx_codes WHERE id = (grp ->> 'code_id')::bigint;
        res := fl_post_charge(ctx, w1.id, c.id, (grp ->> 'amount')::bigint, 1,
                              left(o.name || ': ' || CASE WHEN grp ? 'tip' THEN 'tip'
                                                          ELSE c.description END
                                   || coalesce(' (' || v_desc || ')', ''), 200),
                              v_check, 'pos', true);
        routed := routed OR (res ->> 'routed')::boolean;
        SELECT warnings || coalesce(array_agg(w), '{}') INTO warnings
          FROM jsonb_array_elements_text(res -> 'warnings') AS w
         WHERE w = 'deposit_required' AND NOT (w = ANY (warnings));
        SELECT lines || coalesce(jsonb_agg(jsonb_build_object(
                   'id', l -> 'id', 'folio_id', l -> 'folio_id', 'code', l -> 'code',
                   'type', l -> 'type', 'amount', l -> 'amount') ORDER BY (l ->> 'id')::bigint),
                   '[]'::jsonb),
               ids || coalesce(array_agg((l ->> 'id')::bigint ORDER BY (l ->> 'id')::bigint),
                               '{}')
          INTO lines, ids
          FROM jsonb_array_elements(res -> 'postings') AS l;
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
    PERFORM fl_pos_store(v_req, answer, prop.business_date, s.id, v_total, ids);
    RETURN answer || jsonb_build_object('replayed', false);
END
$$;

-- ---------------------------------------------------------------------------------------------
-- pos.status, pos.postings
-- ---------------------------------------------------------------------------------------------

-- The stored answer for one of this outlet's keys ("replayed": true), or UR unknown_key. A
-- request still running is not visible yet: resending it with the same key is always safe.
CREATE FUNCTION api_pos_status(ctx jsonb, p jsonb) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
    o outlets := fl_pos_outlet(ctx);
    v_key text;
    v_detail text;
    a jsonb;
BEGIN
    IF NOT o.enabled THEN
        RETURN fl_pos_disabled(o);
    END IF;
    BEGIN
        p := fl_params(p);
        PERFORM fl_check_keys(p, ARRAY['key'], '');
        v_key := fl_p_text(p, 'key', '', true, 64);
    EXCEPTION WHEN SQLSTATE 'FL000' THEN
        GET STACKED DIAGNOSTICS v_detail = PG_EXCEPTION_DETAIL;
        RETURN fl_pos_invalid(v_detail);
    END;
    SELECT q.answer INTO a FROM pos_requests q
     WHERE q.outlet_id = o.id AND q.key = v_key AND q.answer IS NOT NULL;
    IF a IS NULL THEN
        RETURN fl_pos_answer('UR', 'unknown_key',
                             'no posting with this key: send it again with the same key',
                             jsonb_build_object('key', v_key));
    END IF;
    RETURN a || jsonb_build_object('replayed', true);
END
$$;

-- This outlet's postings of a business date (default: the open one) for its end-of-day
-- reconciliation: each check posted (OK answers), the totals per transaction code of the lines
-- they made (generated tax and service lines included), and the grand total.
CREATE FUNCTION api_pos_postings(ctx jsonb, p jsonb) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
    o outlets := fl_pos_outlet(ctx);
    prop properties;
    v_date date;
    v_detail text;
    checks jsonb;
    totals jsonb;
    v_total bigint;
    n integer;
BEGIN
    IF NOT o.enabled THEN
        RETURN fl_pos_disabled(o);
    END IF;
    BEGIN
        p := fl_params(p);
        PERFORM fl_check_keys(p, ARRAY['business_date'], '');
        v_date := fl_p_date(p, 'business_date', '', false);
    EXCEPTION WHEN SQLSTATE 'FL000' THEN
        GET STACKED DIAGNOSTICS v_detail = PG_EXCEPTION_DETAIL;
        RETURN fl_pos_invalid(v_detail);
    END;
    SELECT * INTO prop FROM properties WHERE id = o.property_id;
    v_date := coalesce(v_date, prop.business_date);
    SELECT coalesce(jsonb_agg(jsonb_build_object(
               'key', q.key, 'check', q.params ->> 'check', 'room', q.params ->> 'room',
               'stay_id', q.stay_id, 'total', q.total, 'posted_at', q.answered_at,
               'late_charge', coalesce((q.answer ->> 'late_charge')::boolean, false),
               'posting_ids', to_jsonb(q.posting_ids),
               'voided', EXISTS (SELECT 1 FROM postings v
                                  WHERE v.type = 'void' AND v.void_of = ANY (q.posting_ids)))
               ORDER BY q.id), '[]'::jsonb), count(*)
      INTO checks, n
      FROM pos_requests q
     WHERE q.outlet_id = o.id AND q.status = 'OK' AND q.business_date = v_date;
    SELECT coalesce(jsonb_agg(jsonb_build_object('code', x.code, 'description', x.description,
                                                 'kind', x.kind, 'amount', x.amount,
                                                 'lines', x.lines) ORDER BY x.code), '[]'::jsonb),
           coalesce(sum(x.amount), 0)
      INTO totals, v_total
      FROM (SELECT c.code, c.description, c.kind, sum(l.amount)::bigint AS amount,
                   count(*) AS lines
              FROM postings l JOIN trx_codes c ON c.id = l.trx_code_id
             WHERE l.outlet_id = o.id AND l.business_date = v_date
             GROUP BY c.code, c.description, c.kind) AS x;
    RETURN fl_pos_answer('OK', 'listed',
        format('%s check(s) posted on %s, total %s %s', n, v_date,
               fl_money(v_total, prop.minor_units), prop.currency),
        jsonb_build_object('business_date', v_date, 'checks', checks, 'count', n,
                           'totals', totals, 'total', v_total));
END
$$;
