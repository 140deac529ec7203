-- 004_accounting.sql - the guest ledger: guests, groups, stays, folios, postings, transfers,
-- routing rules, closed business dates, and the posting engine every module uses.
--
-- The rules that never bend (SPEC section 1, docs/accounting.md) live here, in the database:
--   - postings are append-only (fl_refuse_change on UPDATE, DELETE and TRUNCATE);
--   - a posting is dated with its property's open business date and never lands on a closed
--     date or a closed folio (BEFORE INSERT trigger, which takes the property row FOR SHARE and
--     the folio row FOR NO KEY UPDATE);
--   - folios.balance is the sum of the folio's postings: an AFTER INSERT trigger adds each
--     amount in the same transaction, and nothing else may change it;
--   - composite foreign keys (property_id, id) make every cross-property link impossible;
--   - a property's currency and minor units are frozen once it has postings.
--
-- The engine (used by the front-desk methods in 005, and meant for POS and the night audit):
--   fl_post_charge(ctx, folio_id, code_id, amount, quantity, description, reference, source,
--                  apply_routing)             a charge with its generated tax/service lines
--   fl_post_payment(ctx, folio_id, code_id, amount, description, reference, source)
--   fl_void_posting(ctx, posting_id, reason, source)
--   fl_adjust_posting(ctx, posting_id, amount, reason, source)
--   fl_transfer_postings(ctx, posting_ids, to_folio_id, reason, source)
--   fl_transfer_balance(ctx, from_folio_id, to_folio_id, amount, reason, source)
--   fl_close_business_date(property_id, actor)
--   fl_folio_check(folio_id), fl_ledger_check(property_id)
-- and their helpers: fl_route_target (where a charge goes), fl_folio_for_posting (a late
-- charge reopens a checked-out stay's window), fl_credit_position / fl_credit_over,
-- fl_posting_insert, fl_post_lines, fl_copy_lines, fl_xfer_code, fl_money.
--
-- Money is bigint minor units everywhere; numeric appears only inside fl_code_split (001).
-- Applied once by the migrate command inside one transaction; never edited once landed.

-- ---------------------------------------------------------------------------------------------
-- Transaction code kinds: 'transfer' (the system code XFER of balance transfers, created per
-- property on first use by fl_xfer_code) and 'paid_out' (cash paid out for a guest, for the
-- cashier module). Neither can be created through trx_code.create.
-- ---------------------------------------------------------------------------------------------

ALTER TABLE trx_codes DROP CONSTRAINT trx_codes_kind_check;
ALTER TABLE trx_codes ADD CONSTRAINT trx_codes_kind_check
    CHECK (kind IN ('charge', 'payment', 'tax', 'service', 'transfer', 'paid_out'));

-- ---------------------------------------------------------------------------------------------
-- Small helpers
-- ---------------------------------------------------------------------------------------------

-- A domain error with machine-readable extra members: the daemon merges the HINT (a JSON
-- object) into the JSON-RPC error's data, e.g. data.windows of balance_not_zero.
CREATE FUNCTION fl_fail_data(reason text, message text, data jsonb) RETURNS void
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = 'FL000', MESSAGE = reason, DETAIL = message,
                          HINT = coalesce(data, '{}'::jsonb)::text;
END
$$;

-- The caller's role; NULL for a system caller (NULL ctx, or a ctx without role: SQL scripts).
CREATE FUNCTION fl_ctx_role(ctx jsonb) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT nullif(btrim(ctx ->> 'role'), '')
$$;

-- True when the caller has one of the roles, or is the system.
CREATE FUNCTION fl_ctx_is(ctx jsonb, VARIADIC roles text[]) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT fl_ctx_role(ctx) IS NULL OR fl_ctx_role(ctx) = ANY (roles)
$$;

CREATE FUNCTION fl_require_role(ctx jsonb, what text, VARIADIC roles text[]) RETURNS void
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF NOT fl_ctx_is(ctx, VARIADIC roles) THEN
        PERFORM fl_fail('forbidden', format('%s needs the role %s (you are %s)', what,
                                            array_to_string(roles, ' or '), fl_ctx_role(ctx)));
    END IF;
END
$$;

-- The source a posting made through the API gets from its caller.
CREATE FUNCTION fl_ctx_source(ctx jsonb) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN fl_ctx_role(ctx) = 'outlet' THEN 'pos'
                WHEN fl_ctx_role(ctx) IS NULL THEN 'system'
                ELSE 'front_desk' END
$$;

-- Refuses a row of another property than the caller's.
CREATE FUNCTION fl_scope_check(ctx jsonb, v_property_id bigint, what text) RETURNS void
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF fl_ctx_property(ctx) IS NOT NULL AND v_property_id IS DISTINCT FROM fl_ctx_property(ctx)
    THEN
        PERFORM fl_fail('forbidden', format('%s belongs to another property', what));
    END IF;
END
$$;

-- An id member (a positive JSON integer).
CREATE FUNCTION fl_p_id(p jsonb, k text, path text, required boolean) RETURNS bigint
LANGUAGE sql IMMUTABLE AS $$
    SELECT fl_p_int(p, k, path, required, 1, 9007199254740991)
$$;

-- An amount member: a JSON integer of minor units within +-10^12.
CREATE FUNCTION fl_p_amount(p jsonb, k text, path text, required boolean,
                            lo bigint DEFAULT -1000000000000, hi bigint DEFAULT 1000000000000)
RETURNS bigint
LANGUAGE sql IMMUTABLE AS $$
    SELECT fl_p_int(p, k, path, required, lo, hi)
$$;

-- The system transfer code of a property (kind 'transfer'), created on first use.
CREATE FUNCTION fl_xfer_code(v_property_id bigint) RETURNS trx_codes
LANGUAGE plpgsql AS $$
DECLARE
    c trx_codes;
BEGIN
    SELECT * INTO c FROM trx_codes
     WHERE property_id = v_property_id AND kind = 'transfer' ORDER BY id LIMIT 1;
    IF FOUND THEN
        RETURN c;
    END IF;
    INSERT INTO trx_codes (property_id, code, description, department, kind, created_by,
                           updated_by)
    VALUES (v_property_id, 'XFER', 'Balance transfer', 'transfer', 'transfer', 'system', 'system')
    ON CONFLICT (property_id, code) DO NOTHING
    RETURNING * INTO c;
    IF c.id IS NULL THEN
        SELECT * INTO c FROM trx_codes WHERE property_id = v_property_id AND code = 'XFER';
        IF c.kind <> 'transfer' THEN
            PERFORM fl_fail('conflict', 'transaction code XFER is taken by a ' || c.kind
                            || ' code; it is reserved for balance transfers');
        END IF;
        RETURN c;
    END IF;
    PERFORM fl_log(NULL, v_property_id, 'trx_code', c.id, 'create', fl_trx_code_json(c));
    RETURN c;
END
$$;

-- Formats an amount of minor units with integer arithmetic only: (1166, 2) -> '11.66',
-- (-5, 2) -> '-0.05', (1200, 0) -> '1200'.
CREATE FUNCTION fl_money(v_amount bigint, v_minor_units integer) RETURNS text
LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT CASE WHEN v_amount < 0 THEN '-' ELSE '' END
           || (abs(v_amount) / d)::text
           || CASE WHEN v_minor_units = 0 THEN ''
                   ELSE '.' || lpad((abs(v_amount) % d)::text, v_minor_units, '0') END
      FROM (SELECT (ARRAY[1, 10, 100, 1000, 10000]::bigint[])[v_minor_units + 1] AS d) AS x
$$;

-- fl_log (001) unchanged in behaviour, rewritten in plpgsql: an sql function is planned again
-- at every call, and every mutation calls it.
CREATE OR REPLACE FUNCTION fl_log(ctx jsonb, v_property_id bigint, v_entity text,
                                  v_entity_id bigint, v_action text, v_detail jsonb)
RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO change_log (actor, property_id, entity, entity_id, action, detail)
    VALUES (fl_actor(ctx), v_property_id, v_entity, v_entity_id, v_action,
            CASE WHEN ctx ? 'via'
                 THEN coalesce(v_detail, '{}') || jsonb_build_object('via', ctx -> 'via')
                 ELSE coalesce(v_detail, '{}') END);
END
$$;

-- ---------------------------------------------------------------------------------------------
-- Tables
-- ---------------------------------------------------------------------------------------------

-- A guest profile. Kept after checkout: a guest's history is the list of their stays.
CREATE TABLE guests (
    id          bigserial PRIMARY KEY,
    property_id bigint NOT NULL REFERENCES properties (id),
    first_name  text NOT NULL CHECK (btrim(first_name) <> '' AND length(first_name) <= 100),
    last_name   text NOT NULL CHECK (btrim(last_name) <> '' AND length(last_name) <= 100),
    email       text CHECK (email ~ '^[^@\s]+@[^@\s]+$' AND length(email) <= 200),
    phone       text CHECK (phone ~ '^[0-9+() ./-]{3,32}$'),
    notes       text CHECK (length(notes) <= 1000),
    created_at  timestamptz NOT NULL DEFAULT now(),
    created_by  text NOT NULL DEFAULT current_user,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    updated_by  text NOT NULL DEFAULT current_user,
    UNIQUE (property_id, id)
);

CREATE INDEX guests_name ON guests (property_id, lower(last_name), lower(first_name));

-- A group (tour, conference block). Its master folio takes the members' routed charges.
-- A code is unique among the property's open groups; a closed group keeps it for history.
CREATE TABLE groups (
    id              bigserial PRIMARY KEY,
    property_id     bigint NOT NULL REFERENCES properties (id),
    code            text NOT NULL CHECK (code ~ '^[A-Z0-9][A-Z0-9_-]{0,15}$'),
    name            text NOT NULL CHECK (btrim(name) <> '' AND length(name) <= 200),
    arrival         date NOT NULL,
    departure       date NOT NULL,
    credit_limit    bigint CHECK (credit_limit BETWEEN 0 AND 1000000000000),
    status          text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'closed')),
    master_folio_id bigint,
    closed_at       timestamptz,
    closed_by       text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    created_by      text NOT NULL DEFAULT current_user,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    updated_by      text NOT NULL DEFAULT current_user,
    UNIQUE (property_id, id),
    CHECK (departure > arrival),
    CHECK ((status = 'closed') = (closed_at IS NOT NULL))
);

CREATE UNIQUE INDEX groups_open_code ON groups (property_id, code) WHERE status = 'open';

-- A guest account: one guest in one room from arrival to departure. share_with is the stay
-- whose room this one joined (several stays in one room).
CREATE TABLE stays (
    id                   bigserial PRIMARY KEY,
    property_id          bigint NOT NULL REFERENCES properties (id),
    number               text GENERATED ALWAYS AS
                         ('S' || CASE WHEN id < 1000000 THEN lpad(id::text, 6, '0')
                                      ELSE id::text END) STORED,
    status               text NOT NULL DEFAULT 'in_house'
                         CHECK (status IN ('in_house', 'checked_out')),
    guest_id             bigint NOT NULL,
    room_id              bigint NOT NULL,
    group_id             bigint,
    share_with           bigint,
    arrival              date NOT NULL,
    departure            date NOT NULL,
    adults               integer NOT NULL DEFAULT 1 CHECK (adults BETWEEN 1 AND 20),
    children             integer NOT NULL DEFAULT 0 CHECK (children BETWEEN 0 AND 20),
    rate                 bigint NOT NULL DEFAULT 0 CHECK (rate BETWEEN 0 AND 1000000000000),
    rate_code_id         bigint NOT NULL,
    credit_limit         bigint CHECK (credit_limit BETWEEN 0 AND 1000000000000),
    no_post              boolean NOT NULL DEFAULT false,
    notes                text CHECK (length(notes) <= 1000),
    checked_in_at        timestamptz NOT NULL DEFAULT now(),
    checked_in_by        text NOT NULL DEFAULT current_user,
    checked_out_at       timestamptz,
    checked_out_by       text,
    checkout_date        date,
    created_at           timestamptz NOT NULL DEFAULT now(),
    created_by           text NOT NULL DEFAULT current_user,
    updated_at           timestamptz NOT NULL DEFAULT now(),
    updated_by           text NOT NULL DEFAULT current_user,
    UNIQUE (property_id, id),
    FOREIGN KEY (property_id, guest_id) REFERENCES guests (property_id, id),
    FOREIGN KEY (property_id, room_id) REFERENCES rooms (property_id, id),
    FOREIGN KEY (property_id, group_id) REFERENCES groups (property_id, id),
    FOREIGN KEY (property_id, share_with) REFERENCES stays (property_id, id),
    FOREIGN KEY (property_id, rate_code_id) REFERENCES trx_codes (property_id, id),
    CHECK (departure > arrival),
    CHECK ((status = 'checked_out') = (checkout_date IS NOT NULL AND checked_out_at IS NOT NULL))
);

CREATE INDEX stays_room_in_house ON stays (room_id) WHERE status = 'in_house';
CREATE INDEX stays_property_status ON stays (property_id, status, departure);
CREATE INDEX stays_property_arrival ON stays (property_id, arrival);
CREATE INDEX stays_property_checkout ON stays (property_id, checkout_date)
    WHERE checkout_date IS NOT NULL;
CREATE INDEX stays_guest ON stays (guest_id);
CREATE INDEX stays_group ON stays (group_id) WHERE group_id IS NOT NULL;

-- An account that takes postings. individual: a stay's window 1..8; master: a group's;
-- non_guest, employee, control, semi_permanent, permanent: named accounts.
CREATE TABLE folios (
    id          bigserial PRIMARY KEY,
    property_id bigint NOT NULL REFERENCES properties (id),
    number      text GENERATED ALWAYS AS
                ('F' || CASE WHEN id < 1000000 THEN lpad(id::text, 6, '0') ELSE id::text END)
                STORED,
    type        text NOT NULL CHECK (type IN ('individual', 'master', 'non_guest', 'employee',
                                              'control', 'semi_permanent', 'permanent')),
    status      text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'closed')),
    stay_id     bigint,
    window_no   integer CHECK (window_no BETWEEN 1 AND 8),
    group_id    bigint,
    name        text CHECK (btrim(name) <> '' AND length(name) <= 200),
    balance     bigint NOT NULL DEFAULT 0,
    closed_at   timestamptz,
    closed_by   text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    created_by  text NOT NULL DEFAULT current_user,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    updated_by  text NOT NULL DEFAULT current_user,
    UNIQUE (property_id, id),
    UNIQUE (stay_id, window_no),
    FOREIGN KEY (property_id, stay_id) REFERENCES stays (property_id, id),
    FOREIGN KEY (property_id, group_id) REFERENCES groups (property_id, id),
    CHECK ((type = 'individual') = (stay_id IS NOT NULL)),
    CHECK ((stay_id IS NULL) = (window_no IS NULL)),
    CHECK ((type = 'master') = (group_id IS NOT NULL)),
    CHECK (type IN ('individual', 'master') OR name IS NOT NULL),
    CHECK ((status = 'closed') = (closed_at IS NOT NULL)),
    CHECK (type <> 'permanent' OR status = 'open')
);

CREATE INDEX folios_property_type ON folios (property_id, type, status);
CREATE INDEX folios_group ON folios (group_id) WHERE group_id IS NOT NULL;

ALTER TABLE groups ADD FOREIGN KEY (property_id, master_folio_id)
    REFERENCES folios (property_id, id);

-- The balance moves only through postings; the identity of a folio never changes.
CREATE FUNCTION fl_folios_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF NEW.balance <> 0 THEN
            PERFORM fl_fail('immutable', 'a folio opens with a zero balance');
        END IF;
        RETURN NEW;
    END IF;
    -- depth 2 = the UPDATE made by the postings trigger; anything else is a direct change
    IF NEW.balance IS DISTINCT FROM OLD.balance AND pg_trigger_depth() < 2 THEN
        PERFORM fl_fail('immutable', 'a folio balance changes only through postings');
    END IF;
    IF NEW.property_id <> OLD.property_id OR NEW.type <> OLD.type
       OR NEW.stay_id IS DISTINCT FROM OLD.stay_id OR NEW.window_no IS DISTINCT FROM OLD.window_no
       OR NEW.group_id IS DISTINCT FROM OLD.group_id THEN
        PERFORM fl_fail('immutable', 'the property, type, stay, window and group of a folio '
                        'never change');
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER folios_guard BEFORE INSERT OR UPDATE ON folios
    FOR EACH ROW EXECUTE FUNCTION fl_folios_guard();
CREATE TRIGGER folios_no_delete BEFORE DELETE ON folios
    FOR EACH ROW EXECUTE FUNCTION fl_refuse_change();
CREATE TRIGGER folios_no_truncate BEFORE TRUNCATE ON folios
    FOR EACH STATEMENT EXECUTE FUNCTION fl_refuse_change();

-- The closed business dates of each property. Append-only.
CREATE TABLE business_dates (
    property_id   bigint NOT NULL REFERENCES properties (id),
    business_date date NOT NULL,
    closed_at     timestamptz NOT NULL DEFAULT now(),
    closed_by     text NOT NULL,
    PRIMARY KEY (property_id, business_date)
);

CREATE TRIGGER business_dates_append_only BEFORE UPDATE OR DELETE ON business_dates
    FOR EACH ROW EXECUTE FUNCTION fl_refuse_change();
CREATE TRIGGER business_dates_no_truncate BEFORE TRUNCATE ON business_dates
    FOR EACH STATEMENT EXECUTE FUNCTION fl_refuse_change();

-- One transfer: postings moved from a folio to another (kind 'postings') or an amount of a
-- balance (kind 'balance'). Both sides' postings carry its id. Append-only.
CREATE TABLE transfers (
    id            bigserial PRIMARY KEY,
    property_id   bigint NOT NULL REFERENCES properties (id),
    kind          text NOT NULL CHECK (kind IN ('postings', 'balance')),
    from_folio_id bigint NOT NULL,
    to_folio_id   bigint NOT NULL,
    amount        bigint NOT NULL DEFAULT 0,
    business_date date NOT NULL,
    reason        text CHECK (length(reason) <= 200),
    created_at    timestamptz NOT NULL DEFAULT now(),
    created_by    text NOT NULL,
    user_id       bigint REFERENCES users (id),
    UNIQUE (property_id, id),
    FOREIGN KEY (property_id, from_folio_id) REFERENCES folios (property_id, id),
    FOREIGN KEY (property_id, to_folio_id) REFERENCES folios (property_id, id),
    CHECK (from_folio_id <> to_folio_id)
);

CREATE INDEX transfers_from ON transfers (from_folio_id);
CREATE INDEX transfers_to ON transfers (to_folio_id);

CREATE TRIGGER transfers_append_only BEFORE UPDATE OR DELETE ON transfers
    FOR EACH ROW EXECUTE FUNCTION fl_refuse_change();
CREATE TRIGGER transfers_no_truncate BEFORE TRUNCATE ON transfers
    FOR EACH STATEMENT EXECUTE FUNCTION fl_refuse_change();

-- One immutable ledger line.
--   type: charge (a charge code, or a tax code posted directly such as the city tax),
--         tax / service (generated by the charge's rules; parent_id = the charge),
--         payment (credit; a refund is positive), void (void_of = the line it cancels),
--         adjustment (adjusts = the posting corrected), transfer_out / transfer_in
--         (transfer_id; transfer_of = the line moved, for posting transfers).
--   unit_amount x quantity is the amount entered (gross of inclusive taxes) for a main line;
--   generated lines have quantity 1 and unit_amount = amount.
CREATE TABLE postings (
    id                   bigserial PRIMARY KEY,
    property_id          bigint NOT NULL REFERENCES properties (id),
    folio_id             bigint NOT NULL,
    business_date        date NOT NULL,
    trx_code_id          bigint NOT NULL,
    type                 text NOT NULL CHECK (type IN ('charge', 'tax', 'service', 'payment',
                                                       'void', 'adjustment', 'transfer_out',
                                                       'transfer_in')),
    amount               bigint NOT NULL
                         CHECK (amount BETWEEN -1000000000000000 AND 1000000000000000),
    quantity             integer NOT NULL DEFAULT 1 CHECK (quantity >= 1),
    unit_amount          bigint NOT NULL,
    description          text NOT NULL
                         CHECK (btrim(description) <> '' AND length(description) <= 200),
    reference            text CHECK (length(reference) <= 64),
    source               text NOT NULL CHECK (source IN ('front_desk', 'pos', 'night_audit',
                                                         'transfer', 'system')),
    operator             text NOT NULL CHECK (btrim(operator) <> ''),
    user_id              bigint REFERENCES users (id),
    outlet_id            bigint,
    created_at           timestamptz NOT NULL DEFAULT now(),
    parent_id            bigint,
    void_of              bigint UNIQUE,
    adjusts              bigint,
    transfer_id          bigint,
    transfer_of          bigint,
    routed_from_folio_id bigint,
    reason               text CHECK (length(reason) <= 200),
    UNIQUE (property_id, id),
    FOREIGN KEY (property_id, folio_id) REFERENCES folios (property_id, id),
    FOREIGN KEY (property_id, trx_code_id) REFERENCES trx_codes (property_id, id),
    FOREIGN KEY (property_id, outlet_id) REFERENCES outlets (property_id, id),
    FOREIGN KEY (property_id, parent_id) REFERENCES postings (property_id, id),
    FOREIGN KEY (property_id, void_of) REFERENCES postings (property_id, id),
    FOREIGN KEY (property_id, adjusts) REFERENCES postings (property_id, id),
    FOREIGN KEY (property_id, transfer_id) REFERENCES transfers (property_id, id),
    FOREIGN KEY (property_id, transfer_of) REFERENCES postings (property_id, id),
    FOREIGN KEY (property_id, routed_from_folio_id) REFERENCES folios (property_id, id),
    -- a main line may be zero (a complimentary night, a charge that inclusive taxes took
    -- whole); a generated line, a payment or a balance transfer never is
    CHECK (amount <> 0 OR (parent_id IS NULL
                           AND type IN ('charge', 'void', 'adjustment', 'transfer_out',
                                        'transfer_in'))),
    CHECK ((type = 'void') = (void_of IS NOT NULL)),
    CHECK ((type = 'adjustment') = (adjusts IS NOT NULL)),
    CHECK ((type IN ('transfer_out', 'transfer_in')) = (transfer_id IS NOT NULL)),
    CHECK (transfer_of IS NULL OR transfer_id IS NOT NULL),
    CHECK (type <> 'service' OR parent_id IS NOT NULL),
    CHECK (parent_id IS NULL OR parent_id < id),
    CHECK (outlet_id IS NULL OR source = 'pos')
);

CREATE INDEX postings_folio ON postings (folio_id, id);
CREATE INDEX postings_business_date ON postings (property_id, business_date);
CREATE INDEX postings_parent ON postings (parent_id) WHERE parent_id IS NOT NULL;
CREATE INDEX postings_adjusts ON postings (adjusts) WHERE adjusts IS NOT NULL;
CREATE INDEX postings_transfer ON postings (transfer_id) WHERE transfer_id IS NOT NULL;
CREATE INDEX postings_transfer_of ON postings (transfer_of) WHERE transfer_of IS NOT NULL;
-- a line is moved out of its folio at most once
CREATE UNIQUE INDEX postings_transferred_once ON postings (transfer_of)
    WHERE type = 'transfer_out';
CREATE INDEX postings_outlet ON postings (outlet_id, business_date) WHERE outlet_id IS NOT NULL;

CREATE TRIGGER postings_append_only BEFORE UPDATE OR DELETE ON postings
    FOR EACH ROW EXECUTE FUNCTION fl_refuse_change();
CREATE TRIGGER postings_no_truncate BEFORE TRUNCATE ON postings
    FOR EACH STATEMENT EXECUTE FUNCTION fl_refuse_change();

-- Dated with the open business date, never a closed one; only into an open folio; a generated
-- line sits on its charge's folio. Locks: the property row FOR SHARE (the close of the date
-- takes it FOR UPDATE, so no posting lands on a date being closed), the folio FOR NO KEY
-- UPDATE (serialises the balance and a concurrent folio.close).
CREATE FUNCTION fl_postings_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    open_date date;
    f_status text;
    parent_folio bigint;
BEGIN
    SELECT business_date INTO open_date FROM properties WHERE id = NEW.property_id FOR SHARE;
    IF NEW.business_date IS DISTINCT FROM open_date
       OR EXISTS (SELECT 1 FROM business_dates b
                   WHERE b.property_id = NEW.property_id AND b.business_date = NEW.business_date)
    THEN
        PERFORM fl_fail('business_date_closed',
                        format('postings are dated with the open business date %s, not %s',
                               open_date, NEW.business_date));
    END IF;
    SELECT status INTO f_status FROM folios
     WHERE id = NEW.folio_id AND property_id = NEW.property_id FOR NO KEY UPDATE;
    IF f_status IS DISTINCT FROM 'open' THEN
        PERFORM fl_fail('folio_closed', format('folio %s is closed', NEW.folio_id));
    END IF;
    IF NEW.parent_id IS NOT NULL THEN
        SELECT folio_id INTO parent_folio FROM postings WHERE id = NEW.parent_id;
        IF parent_folio IS DISTINCT FROM NEW.folio_id THEN
            PERFORM fl_fail('invalid_params', 'a generated line sits on its charge''s folio');
        END IF;
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER postings_guard BEFORE INSERT ON postings
    FOR EACH ROW EXECUTE FUNCTION fl_postings_guard();

CREATE FUNCTION fl_postings_balance() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE folios SET balance = balance + NEW.amount WHERE id = NEW.folio_id;
    RETURN NULL;
END
$$;

CREATE TRIGGER postings_balance AFTER INSERT ON postings
    FOR EACH ROW EXECUTE FUNCTION fl_postings_balance();

-- Routing instructions of a stay: charges of a code (or, failing that, of a department)
-- addressed to the stay's window 1 go to to_folio_id. target says how it was given (another
-- window, the group master, any folio). A cleared rule is kept, inactive, for the record.
CREATE TABLE routing_rules (
    id          bigserial PRIMARY KEY,
    property_id bigint NOT NULL REFERENCES properties (id),
    stay_id     bigint NOT NULL,
    code_id     bigint,
    department  text CHECK (department ~ '^[a-z][a-z0-9_]{0,31}$'),
    to_folio_id bigint NOT NULL,
    target      text NOT NULL CHECK (target IN ('window', 'master', 'folio')),
    active      boolean NOT NULL DEFAULT true,
    cleared_at  timestamptz,
    cleared_by  text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    created_by  text NOT NULL DEFAULT current_user,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    updated_by  text NOT NULL DEFAULT current_user,
    UNIQUE (property_id, id),
    FOREIGN KEY (property_id, stay_id) REFERENCES stays (property_id, id),
    FOREIGN KEY (property_id, code_id) REFERENCES trx_codes (property_id, id),
    FOREIGN KEY (property_id, to_folio_id) REFERENCES folios (property_id, id),
    CHECK ((code_id IS NULL) <> (department IS NULL)),
    CHECK (active = (cleared_at IS NULL))
);

CREATE UNIQUE INDEX routing_rules_code ON routing_rules (stay_id, code_id)
    WHERE active AND code_id IS NOT NULL;
CREATE UNIQUE INDEX routing_rules_department ON routing_rules (stay_id, department)
    WHERE active AND department IS NOT NULL;
CREATE INDEX routing_rules_to ON routing_rules (to_folio_id) WHERE active;

-- A property's currency and minor units give every amount its meaning: frozen once posted.
CREATE FUNCTION fl_properties_money_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF (NEW.currency IS DISTINCT FROM OLD.currency
        OR NEW.minor_units IS DISTINCT FROM OLD.minor_units)
       AND EXISTS (SELECT 1 FROM postings WHERE property_id = OLD.id) THEN
        PERFORM fl_fail('conflict', format('property %s has postings: its currency and minor '
                                           'units can no longer change', OLD.code));
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER properties_money_guard BEFORE UPDATE OF currency, minor_units ON properties
    FOR EACH ROW EXECUTE FUNCTION fl_properties_money_guard();

-- ---------------------------------------------------------------------------------------------
-- JSON views
-- ---------------------------------------------------------------------------------------------

CREATE FUNCTION fl_guest_json(g guests) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', g.id, 'first_name', g.first_name, 'last_name', g.last_name,
        'name', g.first_name || ' ' || g.last_name, 'email', g.email, 'phone', g.phone,
        'notes', g.notes)
$$;

CREATE FUNCTION fl_posting_json(r postings, c trx_codes) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', r.id, 'folio_id', r.folio_id, 'business_date', r.business_date,
        'code', c.code, 'code_id', c.id, 'kind', c.kind, 'department', c.department,
        'type', r.type, 'amount', r.amount, 'quantity', r.quantity,
        'unit_amount', r.unit_amount, 'description', r.description, 'reference', r.reference,
        'source', r.source, 'operator', r.operator, 'user_id', r.user_id,
        'outlet_id', r.outlet_id, 'created_at', r.created_at, 'parent_id', r.parent_id,
        'void_of', r.void_of, 'adjusts', r.adjusts, 'transfer_id', r.transfer_id,
        'transfer_of', r.transfer_of, 'routed_from_folio_id', r.routed_from_folio_id,
        'reason', r.reason)
$$;

-- (plpgsql rather than sql in the functions of the posting path: their plans are cached)
CREATE FUNCTION fl_postings_json(lines postings[]) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
    res jsonb := '[]';
    l postings;
    c trx_codes;
BEGIN
    FOREACH l IN ARRAY coalesce(lines, '{}') LOOP
        IF c.id IS DISTINCT FROM l.trx_code_id THEN
            SELECT * INTO c FROM trx_codes WHERE id = l.trx_code_id;
        END IF;
        res := res || fl_posting_json(l, c);
    END LOOP;
    RETURN res;
END
$$;

-- The short form of a folio that results and stays carry.
CREATE FUNCTION fl_folio_brief(f folios) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('id', f.id, 'number', f.number, 'type', f.type,
                              'window', f.window_no, 'name', f.name, 'status', f.status,
                              'balance', f.balance)
$$;

CREATE FUNCTION fl_folio_json(f folios) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', f.id, 'number', f.number, 'property', fl_property_code(f.property_id),
        'property_id', f.property_id, 'type', f.type, 'status', f.status, 'name', f.name,
        'stay_id', f.stay_id, 'stay_number', s.number, 'window', f.window_no,
        'group_id', coalesce(f.group_id, s.group_id),
        'group', (SELECT g.code FROM groups g WHERE g.id = coalesce(f.group_id, s.group_id)),
        'room', r.number, 'guest', g2.first_name || ' ' || g2.last_name,
        'balance', f.balance, 'closed_at', f.closed_at, 'closed_by', f.closed_by,
        'created_at', f.created_at, 'created_by', f.created_by,
        'updated_at', f.updated_at, 'updated_by', f.updated_by)
      FROM (SELECT 1) AS one
      LEFT JOIN stays s ON s.id = f.stay_id
      LEFT JOIN rooms r ON r.id = s.room_id
      LEFT JOIN guests g2 ON g2.id = s.guest_id
$$;

CREATE FUNCTION fl_routing_json(rr routing_rules) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', rr.id, 'stay_id', rr.stay_id, 'code', c.code, 'department', rr.department,
        'target', rr.target, 'to_folio_id', rr.to_folio_id, 'to_folio_number', f.number,
        'to_window', CASE WHEN f.stay_id = rr.stay_id THEN f.window_no END,
        'to_folio_status', f.status, 'active', rr.active,
        'created_at', rr.created_at, 'created_by', rr.created_by,
        'cleared_at', rr.cleared_at, 'cleared_by', rr.cleared_by)
      FROM folios f LEFT JOIN trx_codes c ON c.id = rr.code_id
     WHERE f.id = rr.to_folio_id
$$;

-- A stay with its guest, folios (every window), active routing rules and total balance.
-- full adds the guest's history (their other stays).
CREATE FUNCTION fl_stay_json(s stays, v_full boolean DEFAULT false) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', s.id, 'number', s.number, 'property', fl_property_code(s.property_id),
        'property_id', s.property_id, 'status', s.status, 'room', r.number,
        'room_id', s.room_id, 'room_type', r.room_type,
        'guest', fl_guest_json(g) || CASE WHEN v_full THEN jsonb_build_object('history', (
            SELECT coalesce(jsonb_agg(jsonb_build_object(
                       'stay_id', h.id, 'number', h.number, 'status', h.status,
                       'room', hr.number, 'arrival', h.arrival, 'departure', h.departure,
                       'checkout_date', h.checkout_date) ORDER BY h.arrival DESC, h.id DESC),
                   '[]'::jsonb)
              FROM stays h JOIN rooms hr ON hr.id = h.room_id
             WHERE h.guest_id = s.guest_id AND h.id <> s.id)) ELSE '{}'::jsonb END,
        'arrival', s.arrival, 'departure', s.departure, 'nights', s.departure - s.arrival,
        'adults', s.adults, 'children', s.children, 'rate', s.rate, 'rate_code', rc.code,
        'credit_limit', s.credit_limit, 'no_post', s.no_post,
        'group', gr.code, 'group_id', s.group_id, 'share_with', s.share_with,
        'notes', s.notes,
        'balance', (SELECT coalesce(sum(f.balance), 0) FROM folios f WHERE f.stay_id = s.id),
        'folios', (SELECT coalesce(jsonb_agg(fl_folio_brief(f) ORDER BY f.window_no), '[]'::jsonb)
                     FROM folios f WHERE f.stay_id = s.id),
        'routing', (SELECT coalesce(jsonb_agg(fl_routing_json(rr) ORDER BY rr.id), '[]'::jsonb)
                      FROM routing_rules rr WHERE rr.stay_id = s.id AND rr.active),
        'checked_in_at', s.checked_in_at, 'checked_in_by', s.checked_in_by,
        'checked_out_at', s.checked_out_at, 'checked_out_by', s.checked_out_by,
        'checkout_date', s.checkout_date,
        'created_at', s.created_at, 'created_by', s.created_by,
        'updated_at', s.updated_at, 'updated_by', s.updated_by)
      FROM rooms r, guests g, trx_codes rc
      LEFT JOIN groups gr ON gr.id = s.group_id
     WHERE r.id = s.room_id AND g.id = s.guest_id AND rc.id = s.rate_code_id
$$;

CREATE FUNCTION fl_group_json(gr groups, v_full boolean DEFAULT false) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', gr.id, 'code', gr.code, 'name', gr.name, 'property', fl_property_code(gr.property_id),
        'property_id', gr.property_id, 'arrival', gr.arrival, 'departure', gr.departure,
        'credit_limit', gr.credit_limit, 'status', gr.status,
        'master_folio', (SELECT fl_folio_brief(f) FROM folios f WHERE f.id = gr.master_folio_id),
        'in_house', (SELECT count(*) FROM stays s
                      WHERE s.group_id = gr.id AND s.status = 'in_house'),
        'closed_at', gr.closed_at, 'closed_by', gr.closed_by,
        'created_at', gr.created_at, 'created_by', gr.created_by,
        'updated_at', gr.updated_at, 'updated_by', gr.updated_by)
        || CASE WHEN v_full THEN jsonb_build_object('members', (
               SELECT coalesce(jsonb_agg(fl_stay_json(s) ORDER BY s.id), '[]'::jsonb)
                 FROM stays s WHERE s.group_id = gr.id))
           ELSE '{}'::jsonb END
$$;

-- ---------------------------------------------------------------------------------------------
-- Lookups with scope checks and locks
-- ---------------------------------------------------------------------------------------------

CREATE FUNCTION fl_folio_find(ctx jsonb, v_id bigint, v_lock boolean DEFAULT false)
RETURNS folios
LANGUAGE plpgsql AS $$
DECLARE
    f folios;
BEGIN
    IF v_lock THEN
        -- lock order everywhere: the property (FOR SHARE), then stays, then folios, then rooms
        PERFORM 1 FROM properties WHERE id = (SELECT x.property_id FROM folios x WHERE x.id = v_id)
            FOR SHARE;
        SELECT * INTO f FROM folios WHERE id = v_id FOR NO KEY UPDATE;
    ELSE
        SELECT * INTO f FROM folios WHERE id = v_id;
    END IF;
    IF NOT FOUND THEN
        PERFORM fl_fail('not_found', format('folio %s does not exist', v_id));
    END IF;
    PERFORM fl_scope_check(ctx, f.property_id, format('folio %s', v_id));
    RETURN f;
END
$$;

CREATE FUNCTION fl_stay_find(ctx jsonb, v_id bigint, v_lock boolean DEFAULT false)
RETURNS stays
LANGUAGE plpgsql AS $$
DECLARE
    s stays;
BEGIN
    IF v_lock THEN
        PERFORM 1 FROM properties WHERE id = (SELECT x.property_id FROM stays x WHERE x.id = v_id)
            FOR SHARE;
        SELECT * INTO s FROM stays WHERE id = v_id FOR NO KEY UPDATE;
    ELSE
        SELECT * INTO s FROM stays WHERE id = v_id;
    END IF;
    IF NOT FOUND THEN
        PERFORM fl_fail('not_found', format('stay %s does not exist', v_id));
    END IF;
    PERFORM fl_scope_check(ctx, s.property_id, format('stay %s', v_id));
    RETURN s;
END
$$;

CREATE FUNCTION fl_posting_find(ctx jsonb, v_id bigint) RETURNS postings
LANGUAGE plpgsql STABLE AS $$
DECLARE
    r postings;
BEGIN
    SELECT * INTO r FROM postings WHERE id = v_id;
    IF NOT FOUND THEN
        PERFORM fl_fail('not_found', format('posting %s does not exist', v_id));
    END IF;
    PERFORM fl_scope_check(ctx, r.property_id, format('posting %s', v_id));
    RETURN r;
END
$$;

-- The window of a stay (NULL if it does not exist).
CREATE FUNCTION fl_stay_window(v_stay_id bigint, v_window integer) RETURNS folios
LANGUAGE plpgsql STABLE AS $$
DECLARE
    f folios;
BEGIN
    SELECT * INTO f FROM folios WHERE stay_id = v_stay_id AND window_no = v_window;
    RETURN f;
END
$$;

-- Opens a window of a stay (the next one when v_window is NULL). window_limit beyond 8.
CREATE FUNCTION fl_window_open(ctx jsonb, s stays, v_window integer DEFAULT NULL,
                               v_name text DEFAULT NULL) RETURNS folios
LANGUAGE plpgsql AS $$
DECLARE
    f folios;
BEGIN
    IF v_window IS NULL THEN
        SELECT coalesce(max(window_no), 0) + 1 INTO v_window FROM folios WHERE stay_id = s.id;
    END IF;
    IF v_window > 8 THEN
        PERFORM fl_fail('window_limit', format('stay %s already has 8 folio windows', s.number));
    END IF;
    BEGIN
        INSERT INTO folios (property_id, type, stay_id, window_no, name, created_by, updated_by)
        VALUES (s.property_id, 'individual', s.id, v_window, v_name, fl_actor(ctx), fl_actor(ctx))
        RETURNING * INTO f;
    EXCEPTION WHEN unique_violation THEN
        PERFORM fl_fail('conflict', format('window %s of stay %s already exists', v_window,
                                           s.number));
    END;
    PERFORM fl_log(ctx, s.property_id, 'folio', f.id, 'create', fl_folio_json(f));
    RETURN f;
END
$$;

-- Reopens a closed folio (the caller has checked that it may) and logs why.
CREATE FUNCTION fl_folio_reopen_do(ctx jsonb, f folios, why text) RETURNS folios
LANGUAGE plpgsql AS $$
DECLARE
    n folios;
BEGIN
    UPDATE folios SET status = 'open', closed_at = NULL, closed_by = NULL,
                      updated_at = now(), updated_by = fl_actor(ctx)
     WHERE id = f.id RETURNING * INTO n;
    PERFORM fl_log(ctx, f.property_id, 'folio', f.id, 'reopen',
                   jsonb_build_object('number', f.number, 'why', why));
    RETURN n;
END
$$;

CREATE FUNCTION fl_folio_close_do(ctx jsonb, f folios) RETURNS folios
LANGUAGE plpgsql AS $$
DECLARE
    n folios;
BEGIN
    UPDATE folios SET status = 'closed', closed_at = now(), closed_by = fl_actor(ctx),
                      updated_at = now(), updated_by = fl_actor(ctx)
     WHERE id = f.id RETURNING * INTO n;
    PERFORM fl_log(ctx, f.property_id, 'folio', f.id, 'close',
                   jsonb_build_object('number', f.number, 'balance', f.balance));
    RETURN n;
END
$$;

-- A folio about to take a correction or late posting. A closed window of a checked-out stay is
-- reopened when v_late_ok (a manager's late charge: it must then be settled again); any other
-- closed folio is folio_closed.
CREATE FUNCTION fl_folio_for_posting(ctx jsonb, v_folio_id bigint, v_late_ok boolean)
RETURNS folios
LANGUAGE plpgsql AS $$
DECLARE
    f folios := fl_folio_find(ctx, v_folio_id, true);
BEGIN
    IF f.status = 'open' THEN
        RETURN f;
    END IF;
    IF v_late_ok AND f.stay_id IS NOT NULL
       AND EXISTS (SELECT 1 FROM stays s WHERE s.id = f.stay_id AND s.status = 'checked_out') THEN
        RETURN fl_folio_reopen_do(ctx, f, 'late posting after checkout');
    END IF;
    PERFORM fl_fail('folio_closed',
                    format('folio %s is closed', f.number)
                    || CASE WHEN f.stay_id IS NOT NULL AND NOT v_late_ok
                            THEN ' (a late charge after checkout needs a manager)' ELSE '' END);
    RETURN f;
END
$$;

-- ---------------------------------------------------------------------------------------------
-- The posting engine
-- ---------------------------------------------------------------------------------------------

-- Inserts one posting. r carries everything but id and created_at; operator, user_id and
-- outlet_id default from ctx; business_date defaults to the property's open date.
CREATE FUNCTION fl_posting_insert(ctx jsonb, r postings) RETURNS postings
LANGUAGE plpgsql AS $$
DECLARE
    n postings;
BEGIN
    INSERT INTO postings (property_id, folio_id, business_date, trx_code_id, type, amount,
                          quantity, unit_amount, description, reference, source, operator,
                          user_id, outlet_id, parent_id, void_of, adjusts, transfer_id,
                          transfer_of, routed_from_folio_id, reason)
    VALUES (r.property_id, r.folio_id,
            coalesce(r.business_date,
                     (SELECT business_date FROM properties WHERE id = r.property_id)),
            r.trx_code_id, r.type, r.amount, coalesce(r.quantity, 1),
            coalesce(r.unit_amount, r.amount), r.description, r.reference, r.source,
            coalesce(r.operator, fl_actor(ctx)),
            coalesce(r.user_id, (ctx ->> 'user_id')::bigint),
            coalesce(r.outlet_id, (ctx ->> 'outlet_id')::bigint),
            r.parent_id, r.void_of, r.adjusts, r.transfer_id, r.transfer_of,
            r.routed_from_folio_id, r.reason)
    RETURNING * INTO n;
    RETURN n;
END
$$;

-- Splits v_gross on a code with fl_code_split and inserts the main line and one line per
-- non-zero generated amount (parent_id = the main line). tmpl gives the folio, the business
-- date and the links every line carries (adjusts, routed_from_folio_id, reason...). The main
-- line gets v_type (a charge on a tax code becomes type 'tax'); generated lines get their
-- code's kind for a charge, else v_type. Returns the lines, main line first.
CREATE FUNCTION fl_post_lines(ctx jsonb, tmpl postings, c trx_codes, v_gross bigint,
                              v_quantity integer, v_unit bigint, v_type text) RETURNS postings[]
LANGUAGE plpgsql AS $$
DECLARE
    lines postings[] := '{}';
    main postings;
    r postings;
    sp record;
BEGIN
    FOR sp IN SELECT * FROM fl_code_split(c.id, v_gross) ORDER BY seq LOOP
        r := tmpl;
        r.trx_code_id := sp.trx_code_id;
        r.amount := sp.amount;
        IF sp.seq = 0 THEN
            r.type := CASE WHEN v_type = 'charge' AND c.kind = 'tax' THEN 'tax' ELSE v_type END;
            r.quantity := v_quantity;
            r.unit_amount := v_unit;
            main := fl_posting_insert(ctx, r);
            lines := lines || main;
        ELSIF sp.amount <> 0 THEN
            r.type := CASE WHEN v_type = 'charge' THEN sp.kind ELSE v_type END;
            r.quantity := 1;
            r.unit_amount := sp.amount;
            r.parent_id := main.id;
            r.description := (SELECT g.description FROM trx_codes g WHERE g.id = sp.trx_code_id);
            lines := lines || fl_posting_insert(ctx, r);
        END IF;
    END LOOP;
    RETURN lines;
END
$$;

-- Copies a main line and its generated lines onto a folio, each amount times v_sign
-- (-1 reverses). tmpl gives the folio, type, source and links; v_link names the column that
-- points to the copied line ('void_of', 'transfer_of' or NULL: adjusts and transfer_id come
-- from tmpl). Returns the new lines, main line first.
CREATE FUNCTION fl_copy_lines(ctx jsonb, tmpl postings, v_main_id bigint, v_sign integer,
                              v_link text) RETURNS postings[]
LANGUAGE plpgsql AS $$
DECLARE
    lines postings[] := '{}';
    main postings;
    o postings;
    r postings;
BEGIN
    FOR o IN SELECT * FROM postings WHERE id = v_main_id OR parent_id = v_main_id ORDER BY id LOOP
        r := tmpl;
        r.trx_code_id := o.trx_code_id;
        r.amount := v_sign * o.amount;
        r.quantity := o.quantity;
        r.unit_amount := v_sign * o.unit_amount;
        r.description := o.description;
        r.reference := o.reference;
        r.parent_id := CASE WHEN o.id = v_main_id THEN NULL ELSE main.id END;
        r.routed_from_folio_id := coalesce(tmpl.routed_from_folio_id, o.routed_from_folio_id);
        IF v_link = 'void_of' THEN
            r.void_of := o.id;
        ELSIF v_link = 'transfer_of' THEN
            r.transfer_of := o.id;
        END IF;
        IF o.id = v_main_id THEN
            main := fl_posting_insert(ctx, r);
            lines := lines || main;
        ELSE
            lines := lines || fl_posting_insert(ctx, r);
        END IF;
    END LOOP;
    RETURN lines;
END
$$;

-- Where a charge addressed to folio f goes. Routing applies to charges addressed to window 1
-- of a stay (the default target of the front desk, POS and the night audit); a charge posted
-- explicitly to another window stays there. A code rule wins over a department rule. When the
-- rule's target is closed the charge stays on f and target_closed says so.
CREATE FUNCTION fl_route_target(f folios, c trx_codes, OUT folio_id bigint, OUT routed boolean,
                                OUT target_closed bigint)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    rr routing_rules;
    t_status text;
BEGIN
    folio_id := f.id;
    routed := false;
    IF f.stay_id IS NULL OR f.window_no <> 1 THEN
        RETURN;
    END IF;
    SELECT * INTO rr FROM routing_rules
     WHERE stay_id = f.stay_id AND active
       AND (code_id = c.id OR (code_id IS NULL AND department = c.department))
     ORDER BY code_id IS NULL, id LIMIT 1;
    IF NOT FOUND OR rr.to_folio_id = f.id THEN
        RETURN;
    END IF;
    SELECT status INTO t_status FROM folios WHERE id = rr.to_folio_id;
    IF t_status <> 'open' THEN
        target_closed := rr.to_folio_id;
        RETURN;
    END IF;
    folio_id := rr.to_folio_id;
    routed := true;
END
$$;

-- The credit position of the account a folio belongs to: a stay (the sum of its windows) or a
-- group (its master). {"credit_limit" (null = no limit), "balance", "available" (null = no
-- limit), "stay_id", "group_id"}; NULL for other folios. POS can test a posting's total
-- against "available" before posting (credit_policy refuse).
CREATE FUNCTION fl_credit_position(v_folio_id bigint) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
    f folios;
    v_limit bigint;
    v_balance bigint;
    v_stay bigint;
    v_group bigint;
BEGIN
    SELECT * INTO f FROM folios WHERE id = v_folio_id;
    IF f.stay_id IS NOT NULL THEN
        v_stay := f.stay_id;
        SELECT credit_limit INTO v_limit FROM stays WHERE id = f.stay_id;
        SELECT sum(w.balance) INTO v_balance FROM folios w WHERE w.stay_id = f.stay_id;
    ELSIF f.type = 'master' THEN
        v_group := f.group_id;
        SELECT credit_limit INTO v_limit FROM groups WHERE id = f.group_id;
        v_balance := f.balance;
    ELSE
        RETURN NULL;
    END IF;
    RETURN jsonb_build_object('credit_limit', v_limit, 'balance', v_balance,
                              'available', v_limit - v_balance,
                              'stay_id', v_stay, 'group_id', v_group);
END
$$;

-- The credit position when the balance exceeds the limit, else NULL (deposit_required).
CREATE FUNCTION fl_credit_over(v_folio_id bigint) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
    c jsonb := fl_credit_position(v_folio_id);
BEGIN
    RETURN CASE WHEN (c ->> 'available')::bigint < 0 THEN c END;
END
$$;

-- The answer of a posting operation.
CREATE FUNCTION fl_post_result(v_folio_id bigint, lines postings[], v_routed boolean,
                               v_routed_from bigint, v_warnings text[], v_data jsonb)
RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
    j jsonb := fl_postings_json(lines);
    f folios;
    total bigint := 0;
    l postings;
BEGIN
    FOREACH l IN ARRAY lines LOOP
        total := total + l.amount;
    END LOOP;
    SELECT * INTO f FROM folios WHERE id = v_folio_id;
    RETURN jsonb_build_object(
        'posting', j -> 0, 'postings', j, 'total', total, 'folio', fl_folio_brief(f),
        'routed', v_routed, 'routed_from_folio_id', v_routed_from,
        'warnings', to_jsonb(coalesce(v_warnings, '{}'::text[])),
        'data', coalesce(v_data, '{}'::jsonb));
END
$$;

-- Posts a charge: v_amount per unit x v_quantity (the gross, within +-10^12) on a charge code
-- (or a tax code posted directly, such as the city tax), with the tax and service lines its
-- rules generate. With v_apply_routing, a charge addressed to a stay's window 1 follows the
-- stay's routing rules. The folio addressed and the target must be open (folio_closed; a late
-- charge reopens the addressed window first with fl_folio_for_posting). Returns
--   {"posting": main line, "postings": [every line], "total", "folio": {id, number, balance...},
--    "routed", "routed_from_folio_id", "warnings": ["deposit_required", ...],
--    "data": {"credit_limit", "balance", ...}}
-- warnings: deposit_required (the stay's total balance, or the master's for a group, now exceeds
-- its credit limit: the posting stands), routing_target_closed (the routing rule's folio is
-- closed: the charge stayed on the folio it was addressed to).
-- Used by folio.post, and meant for pos.post (source 'pos') and the night audit ('night_audit').
CREATE FUNCTION fl_post_charge(ctx jsonb, v_folio_id bigint, v_code_id bigint, v_amount bigint,
                               v_quantity integer DEFAULT 1, v_description text DEFAULT NULL,
                               v_reference text DEFAULT NULL, v_source text DEFAULT NULL,
                               v_apply_routing boolean DEFAULT true)
RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    f folios := fl_folio_find(ctx, v_folio_id);
    c trx_codes;
    rt record;
    target bigint := v_folio_id;
    routed boolean := false;
    tmpl postings;
    lines postings[];
    warnings text[] := '{}';
    data jsonb := '{}';
    over jsonb;
    gross bigint;
BEGIN
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
    SELECT * INTO c FROM trx_codes WHERE id = v_code_id AND property_id = f.property_id;
    IF NOT FOUND THEN
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
    PERFORM 1 FROM properties WHERE id = f.property_id FOR SHARE;
    IF v_apply_routing AND f.stay_id IS NOT NULL THEN
        -- a closed folio takes nothing, not even a charge that routing would send elsewhere
        -- (read without a lock: the charge does not land on it, and a lock here would be taken
        -- before the target's, against the order of a group checkout)
        SELECT * INTO f FROM folios WHERE id = f.id;
        IF f.status <> 'open' THEN
            PERFORM fl_fail('folio_closed', format('folio %s is closed', f.number));
        END IF;
        rt := fl_route_target(f, c);
        target := rt.folio_id;
        routed := rt.routed;
        IF rt.target_closed IS NOT NULL THEN
            warnings := warnings || 'routing_target_closed'::text;
            data := data || jsonb_build_object('routing_target_folio_id', rt.target_closed);
        END IF;
    END IF;

    tmpl.property_id := f.property_id;
    tmpl.folio_id := target;
    tmpl.description := coalesce(nullif(btrim(v_description), ''), c.description);
    tmpl.reference := nullif(btrim(v_reference), '');
    tmpl.source := coalesce(v_source, fl_ctx_source(ctx));
    tmpl.routed_from_folio_id := CASE WHEN routed THEN f.id END;
    lines := fl_post_lines(ctx, tmpl, c, gross, v_quantity::integer, v_amount, 'charge');

    over := fl_credit_over(target);
    IF over IS NOT NULL THEN
        warnings := warnings || 'deposit_required'::text;
        data := data || over;
    END IF;
    PERFORM fl_log(ctx, f.property_id, 'folio', target, 'post', jsonb_build_object(
        'posting_id', lines[1].id, 'code', c.code, 'amount', gross, 'quantity', v_quantity,
        'total', (SELECT sum(l.amount) FROM unnest(lines) AS l), 'source', tmpl.source,
        'routed_from_folio_id', tmpl.routed_from_folio_id));
    RETURN fl_post_result(target, lines, routed, tmpl.routed_from_folio_id, warnings, data);
END
$$;

-- Posts a payment on a payment code: v_amount is the money received (5000 posts -5000); a
-- negative v_amount is a refund (a positive posting). Same answer as fl_post_charge.
CREATE FUNCTION fl_post_payment(ctx jsonb, v_folio_id bigint, v_code_id bigint, v_amount bigint,
                                v_description text DEFAULT NULL, v_reference text DEFAULT NULL,
                                v_source text DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    f folios := fl_folio_find(ctx, v_folio_id);
    c trx_codes;
    r postings;
    warnings text[] := '{}';
    data jsonb := '{}';
    over jsonb;
BEGIN
    IF v_amount IS NULL OR v_amount = 0 OR abs(v_amount) > 1000000000000 THEN
        PERFORM fl_fail('invalid_params', 'amount must be non-zero, between -10^12 and 10^12');
    END IF;
    IF length(v_description) > 200 OR length(v_reference) > 64 THEN
        PERFORM fl_fail('invalid_params', 'description is at most 200 characters, reference 64');
    END IF;
    SELECT * INTO c FROM trx_codes WHERE id = v_code_id AND property_id = f.property_id;
    IF NOT FOUND THEN
        PERFORM fl_fail('not_found', format('transaction code %s does not exist in the folio''s '
                                            'property', v_code_id));
    END IF;
    IF c.kind <> 'payment' OR NOT c.enabled THEN
        PERFORM fl_fail('invalid_code', format('%s is not an enabled payment code', c.code));
    END IF;
    PERFORM 1 FROM properties WHERE id = f.property_id FOR SHARE;
    r.property_id := f.property_id;
    r.folio_id := f.id;
    r.trx_code_id := c.id;
    r.type := 'payment';
    r.amount := -v_amount;
    r.unit_amount := -v_amount;
    r.description := coalesce(nullif(btrim(v_description), ''), c.description);
    r.reference := nullif(btrim(v_reference), '');
    r.source := coalesce(v_source, fl_ctx_source(ctx));
    r := fl_posting_insert(ctx, r);
    over := fl_credit_over(f.id);
    IF over IS NOT NULL AND r.amount > 0 THEN
        warnings := warnings || 'deposit_required'::text;
        data := data || over;
    END IF;
    PERFORM fl_log(ctx, f.property_id, 'folio', f.id, 'pay', jsonb_build_object(
        'posting_id', r.id, 'code', c.code, 'method', c.payment_method, 'amount', v_amount,
        'source', r.source));
    RETURN fl_post_result(f.id, ARRAY[r], false, NULL, warnings, data);
END
$$;

-- The posting a transfer copy descends from (itself when it is not a transfer copy): its
-- business date is the one that decides between a void and an adjustment.
CREATE FUNCTION fl_posting_origin(r postings) RETURNS postings
LANGUAGE plpgsql STABLE AS $$
DECLARE
    o postings := r;
BEGIN
    WHILE o.type = 'transfer_in' AND o.transfer_of IS NOT NULL LOOP
        SELECT * INTO o FROM postings WHERE id = o.transfer_of;
    END LOOP;
    RETURN o;
END
$$;

-- Why a posting cannot be corrected (voided, adjusted, transferred), or NULL: it must be a
-- main line (not generated), a charge, a directly posted tax, a payment, or the copy a posting
-- transfer made; not voided; not moved to another folio.
CREATE FUNCTION fl_posting_correctable(r postings, what text) RETURNS void
LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF r.parent_id IS NOT NULL THEN
        PERFORM fl_fail('not_' || what || 'able',
                        format('posting %s is generated by posting %s: %s that one', r.id,
                               r.parent_id, what));
    END IF;
    IF NOT (r.type IN ('charge', 'tax', 'payment')
            OR (r.type = 'transfer_in' AND r.transfer_of IS NOT NULL)) THEN
        PERFORM fl_fail('not_' || what || 'able',
                        format('posting %s (%s) cannot be %s', r.id,
                               CASE WHEN r.type = 'transfer_in' THEN 'a balance transfer'
                                    ELSE replace(r.type, '_', ' ') END,
                               CASE what WHEN 'void' THEN 'voided' WHEN 'adjust' THEN 'adjusted'
                                         ELSE 'transferred' END));
    END IF;
    IF EXISTS (SELECT 1 FROM postings v WHERE v.void_of = r.id) THEN
        PERFORM fl_fail(CASE WHEN what = 'transfer' THEN 'not_transferable'
                             ELSE 'already_voided' END,
                        format('posting %s is voided', r.id));
    END IF;
    IF EXISTS (SELECT 1 FROM postings t WHERE t.transfer_of = r.id AND t.type = 'transfer_out')
    THEN
        PERFORM fl_fail(CASE WHEN what = 'transfer' THEN 'already_transferred'
                             ELSE 'posting_transferred' END,
                        format('posting %s was transferred to folio %s', r.id,
                               (SELECT tf.number FROM postings t
                                  JOIN transfers x ON x.id = t.transfer_id
                                  JOIN folios tf ON tf.id = x.to_folio_id
                                 WHERE t.transfer_of = r.id AND t.type = 'transfer_out'))
                        || CASE WHEN what = 'transfer' THEN ''
                                ELSE ': ' || what || ' it there' END);
    END IF;
END
$$;

-- Voids a posting of the open business date: a 'void' line reversing it and each of its
-- generated lines exactly, on the folio they sit on (void_of = the line). A manager may void on
-- a checked-out stay's closed window (it reopens). -> {"voids", "total", "folio"}
CREATE FUNCTION fl_void_posting(ctx jsonb, v_posting_id bigint, v_reason text DEFAULT NULL,
                                v_source text DEFAULT NULL) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    r postings := fl_posting_find(ctx, v_posting_id);
    o postings;
    f folios;
    open_date date;
    tmpl postings;
    lines postings[];
BEGIN
    PERFORM fl_posting_correctable(r, 'void');
    SELECT business_date INTO open_date FROM properties WHERE id = r.property_id FOR SHARE;
    o := fl_posting_origin(r);
    IF o.business_date <> open_date THEN
        PERFORM fl_fail('business_date_closed',
                        format('posting %s belongs to the closed business date %s: correct it '
                               'with folio.adjust', r.id, o.business_date));
    END IF;
    f := fl_folio_for_posting(ctx, r.folio_id, fl_ctx_is(ctx, 'manager'));
    tmpl.property_id := r.property_id;
    tmpl.folio_id := r.folio_id;
    tmpl.type := 'void';
    tmpl.source := coalesce(v_source, fl_ctx_source(ctx));
    tmpl.reason := nullif(btrim(v_reason), '');
    lines := fl_copy_lines(ctx, tmpl, r.id, -1, 'void_of');
    PERFORM fl_log(ctx, r.property_id, 'folio', r.folio_id, 'void', jsonb_build_object(
        'posting_id', r.id, 'void_ids', (SELECT jsonb_agg(l.id ORDER BY l.id) FROM unnest(lines) l),
        'total', (SELECT sum(l.amount) FROM unnest(lines) l), 'reason', tmpl.reason));
    RETURN jsonb_build_object(
        'voids', fl_postings_json(lines),
        'total', (SELECT coalesce(sum(l.amount), 0) FROM unnest(lines) AS l),
        'folio', (SELECT fl_folio_brief(x) FROM folios x WHERE x.id = r.folio_id));
END
$$;

-- Corrects a posting of a closed business date with 'adjustment' lines dated today on its
-- folio (adjusts = the posting). Without v_amount: reverses the posting and its generated lines
-- exactly (only if nothing was adjusted yet). With v_amount (> 0): an allowance of that much of
-- the amount entered, towards zero (-v_amount on a charge, +v_amount on a payment), split by the
-- code's current rules. The adjustments of a posting never exceed it (exceeds_original).
-- -> {"posting", "postings", "total", "folio", "left"} (left: what may still be adjusted)
CREATE FUNCTION fl_adjust_posting(ctx jsonb, v_posting_id bigint, v_amount bigint,
                                  v_reason text, v_source text DEFAULT NULL) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    r postings := fl_posting_find(ctx, v_posting_id);
    o postings;
    c trx_codes;
    f folios;
    open_date date;
    tmpl postings;
    lines postings[];
    entered bigint;
    done bigint;
    sgn integer;
    adj bigint;
BEGIN
    IF nullif(btrim(v_reason), '') IS NULL THEN
        PERFORM fl_fail('invalid_params', 'reason is required for an adjustment');
    END IF;
    PERFORM fl_posting_correctable(r, 'adjust');
    SELECT business_date INTO open_date FROM properties WHERE id = r.property_id FOR SHARE;
    o := fl_posting_origin(r);
    IF o.business_date = open_date THEN
        PERFORM fl_fail('use_void', format('posting %s belongs to the open business date %s: '
                                           'void it instead', r.id, open_date));
    END IF;
    f := fl_folio_for_posting(ctx, r.folio_id, fl_ctx_is(ctx, 'manager'));
    SELECT * INTO c FROM trx_codes WHERE id = r.trx_code_id;
    entered := r.unit_amount * r.quantity;
    sgn := sign(entered)::integer;
    SELECT coalesce(sum(a.unit_amount * a.quantity), 0) INTO done
      FROM postings a WHERE a.adjusts = r.id AND a.parent_id IS NULL;
    tmpl.property_id := r.property_id;
    tmpl.folio_id := r.folio_id;
    tmpl.type := 'adjustment';
    tmpl.adjusts := r.id;
    tmpl.source := coalesce(v_source, fl_ctx_source(ctx));
    tmpl.reason := btrim(v_reason);
    IF v_amount IS NULL THEN
        IF done <> 0 THEN
            PERFORM fl_fail('exceeds_original',
                            format('posting %s was already adjusted by %s: give the amount left '
                                   '(%s)', r.id, -sgn * done, abs(entered) - abs(done)));
        END IF;
        IF entered = 0 AND r.amount = 0 THEN
            PERFORM fl_fail('exceeds_original', format('posting %s is zero', r.id));
        END IF;
        lines := fl_copy_lines(ctx, tmpl, r.id, -1, NULL);
    ELSE
        IF v_amount <= 0 THEN
            PERFORM fl_fail('invalid_params', 'amount must be positive');
        END IF;
        IF v_amount > abs(entered) - abs(done) THEN
            PERFORM fl_fail('exceeds_original',
                            format('posting %s was %s and adjusted by %s: at most %s is left',
                                   r.id, abs(entered), abs(done), abs(entered) - abs(done)));
        END IF;
        adj := -sgn * v_amount;
        tmpl.description := 'Adjustment: ' || left(r.description, 180);
        tmpl.reference := r.reference;
        IF c.kind IN ('charge', 'tax') THEN
            lines := fl_post_lines(ctx, tmpl, c, adj, 1, adj, 'adjustment');
        ELSE
            tmpl.trx_code_id := c.id;
            tmpl.amount := adj;
            tmpl.unit_amount := adj;
            lines := ARRAY[fl_posting_insert(ctx, tmpl)];
        END IF;
    END IF;
    PERFORM fl_log(ctx, r.property_id, 'folio', r.folio_id, 'adjust', jsonb_build_object(
        'posting_id', r.id, 'adjustment_ids',
        (SELECT jsonb_agg(l.id ORDER BY l.id) FROM unnest(lines) l),
        'amount', v_amount, 'total', (SELECT sum(l.amount) FROM unnest(lines) l),
        'reason', tmpl.reason));
    RETURN fl_post_result(r.folio_id, lines, false, NULL, '{}', '{}')
           || jsonb_build_object('left', abs(entered) - abs(done)
                                         - abs(lines[1].unit_amount * lines[1].quantity));
END
$$;

-- Checks a transfer's two folios: same property, different, both open; locks them in id order.
CREATE FUNCTION fl_transfer_folios(ctx jsonb, v_from bigint, v_to bigint) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    a folios;
    b folios;
BEGIN
    IF v_from = v_to THEN
        PERFORM fl_fail('same_folio', 'a transfer goes to another folio');
    END IF;
    SELECT * INTO a FROM folios WHERE id = v_from;
    SELECT * INTO b FROM folios WHERE id = v_to;
    IF a.id IS NULL THEN
        PERFORM fl_fail('not_found', format('folio %s does not exist', v_from));
    END IF;
    IF b.id IS NULL THEN
        PERFORM fl_fail('not_found', format('folio %s does not exist', v_to));
    END IF;
    PERFORM fl_scope_check(ctx, a.property_id, format('folio %s', v_from));
    IF a.property_id <> b.property_id THEN
        PERFORM fl_fail('cross_property', format('folio %s belongs to another property than '
                                                 'folio %s', b.number, a.number));
    END IF;
    PERFORM 1 FROM properties WHERE id = a.property_id FOR SHARE;
    PERFORM 1 FROM folios WHERE id IN (v_from, v_to) ORDER BY id FOR NO KEY UPDATE;
    SELECT * INTO a FROM folios WHERE id = v_from;
    SELECT * INTO b FROM folios WHERE id = v_to;
    IF a.status <> 'open' THEN
        PERFORM fl_fail('folio_closed', format('folio %s (from) is closed', a.number));
    END IF;
    IF b.status <> 'open' THEN
        PERFORM fl_fail('folio_closed', format('folio %s (to) is closed', b.number));
    END IF;
END
$$;

CREATE FUNCTION fl_transfer_result(t transfers) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'transfer_id', t.id, 'kind', t.kind, 'amount', t.amount, 'reason', t.reason,
        'from', (SELECT fl_folio_brief(f) FROM folios f WHERE f.id = t.from_folio_id),
        'to', (SELECT fl_folio_brief(f) FROM folios f WHERE f.id = t.to_folio_id),
        'postings', (SELECT fl_postings_json(array_agg(p ORDER BY p.id))
                       FROM postings p WHERE p.transfer_id = t.id),
        'warnings', CASE WHEN fl_credit_over(t.to_folio_id) IS NOT NULL
                         THEN '["deposit_required"]'::jsonb ELSE '[]'::jsonb END,
        'data', coalesce(fl_credit_over(t.to_folio_id), '{}'::jsonb))
$$;

-- Moves postings (each with its generated lines) from their folio to another: a transfer_out
-- reversal on the source and a transfer_in copy on the target, every line linked to the line it
-- moves (transfer_of) and to one transfers row. All postings must sit on one folio.
CREATE FUNCTION fl_transfer_postings(ctx jsonb, v_ids bigint[], v_to bigint,
                                     v_reason text DEFAULT NULL, v_source text DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    r postings;
    v_from bigint;
    t transfers;
    tmpl postings;
    moved bigint;
    v_pid bigint;
BEGIN
    IF v_ids IS NULL OR cardinality(v_ids) = 0 THEN
        PERFORM fl_fail('invalid_params', 'posting_ids must name at least one posting');
    END IF;
    IF cardinality(v_ids) <> (SELECT count(DISTINCT x) FROM unnest(v_ids) AS x) THEN
        PERFORM fl_fail('invalid_params', 'posting_ids names a posting twice');
    END IF;
    FOREACH v_pid IN ARRAY v_ids LOOP
        r := fl_posting_find(ctx, v_pid);
        IF v_from IS NULL THEN
            v_from := r.folio_id;
        ELSIF r.folio_id <> v_from THEN
            PERFORM fl_fail('invalid_params', 'the postings of one transfer must sit on one folio');
        END IF;
    END LOOP;
    PERFORM fl_transfer_folios(ctx, v_from, v_to);
    FOREACH v_pid IN ARRAY v_ids LOOP
        SELECT * INTO r FROM postings p WHERE p.id = v_pid;
        PERFORM fl_posting_correctable(r, 'transfer');
        IF EXISTS (SELECT 1 FROM postings a WHERE a.adjusts = r.id) THEN
            PERFORM fl_fail('not_transferable', format('posting %s has adjustments: move an '
                                                       'amount with folio.transfer_balance', r.id));
        END IF;
    END LOOP;
    SELECT sum(p.amount) INTO moved FROM postings p
     WHERE p.id = ANY (v_ids) OR p.parent_id = ANY (v_ids);
    INSERT INTO transfers (property_id, kind, from_folio_id, to_folio_id, amount, business_date,
                           reason, created_by, user_id)
    SELECT f.property_id, 'postings', v_from, v_to, moved, pr.business_date,
           nullif(btrim(v_reason), ''), fl_actor(ctx), (ctx ->> 'user_id')::bigint
      FROM folios f JOIN properties pr ON pr.id = f.property_id WHERE f.id = v_from
    RETURNING * INTO t;
    tmpl.property_id := t.property_id;
    tmpl.transfer_id := t.id;
    tmpl.source := coalesce(v_source, 'transfer');
    tmpl.reason := t.reason;
    FOREACH v_pid IN ARRAY v_ids LOOP
        tmpl.folio_id := v_from;
        tmpl.type := 'transfer_out';
        PERFORM fl_copy_lines(ctx, tmpl, v_pid, -1, 'transfer_of');
        tmpl.folio_id := v_to;
        tmpl.type := 'transfer_in';
        PERFORM fl_copy_lines(ctx, tmpl, v_pid, 1, 'transfer_of');
    END LOOP;
    PERFORM fl_log(ctx, t.property_id, 'transfer', t.id, 'create', jsonb_build_object(
        'kind', 'postings', 'from_folio_id', v_from, 'to_folio_id', v_to,
        'posting_ids', to_jsonb(v_ids), 'amount', moved, 'reason', t.reason));
    RETURN fl_transfer_result(t);
END
$$;

-- A folio's number and whose it is: 'F000003 Smith wedding', 'F000001 Ada Lovelace'.
CREATE FUNCTION fl_folio_label(f folios) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT f.number || coalesce(' ' || coalesce(f.name, (SELECT g.first_name || ' ' || g.last_name
                                                           FROM stays s
                                                           JOIN guests g ON g.id = s.guest_id
                                                          WHERE s.id = f.stay_id)), '')
$$;

-- Moves an amount of a folio's balance to another folio: one transfer_out line on the source
-- and one transfer_in line on the target, on the property's system code XFER, linked by one
-- transfers row. v_amount (> 0) is taken in the direction of the balance (a credit balance
-- moves as a credit) and defaults to the whole balance; it may not exceed it.
CREATE FUNCTION fl_transfer_balance(ctx jsonb, v_from bigint, v_to bigint,
                                    v_amount bigint DEFAULT NULL, v_reason text DEFAULT NULL,
                                    v_source text DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    a folios;
    b folios;
    c trx_codes;
    t transfers;
    r postings;
    moved bigint;
BEGIN
    PERFORM fl_transfer_folios(ctx, v_from, v_to);
    SELECT * INTO a FROM folios WHERE id = v_from;
    SELECT * INTO b FROM folios WHERE id = v_to;
    IF a.balance = 0 THEN
        PERFORM fl_fail('invalid_params', format('folio %s has a zero balance: nothing to transfer',
                                                 a.number));
    END IF;
    IF v_amount IS NOT NULL AND v_amount <= 0 THEN
        PERFORM fl_fail('invalid_params', 'amount must be positive');
    END IF;
    IF v_amount > abs(a.balance) THEN
        PERFORM fl_fail('invalid_params', format('amount %s exceeds the balance of folio %s (%s)',
                                                 v_amount, a.number, a.balance));
    END IF;
    moved := sign(a.balance) * coalesce(v_amount, abs(a.balance));
    c := fl_xfer_code(a.property_id);
    INSERT INTO transfers (property_id, kind, from_folio_id, to_folio_id, amount, business_date,
                           reason, created_by, user_id)
    SELECT a.property_id, 'balance', a.id, b.id, moved, pr.business_date,
           nullif(btrim(v_reason), ''), fl_actor(ctx), (ctx ->> 'user_id')::bigint
      FROM properties pr WHERE pr.id = a.property_id
    RETURNING * INTO t;
    r.property_id := a.property_id;
    r.trx_code_id := c.id;
    r.transfer_id := t.id;
    r.source := coalesce(v_source, 'transfer');
    r.reason := t.reason;
    r.folio_id := a.id;
    r.type := 'transfer_out';
    r.amount := -moved;
    r.unit_amount := -moved;
    r.description := left('Transfer to ' || fl_folio_label(b), 200);
    PERFORM fl_posting_insert(ctx, r);
    r.folio_id := b.id;
    r.type := 'transfer_in';
    r.amount := moved;
    r.unit_amount := moved;
    r.description := left('Transfer from ' || fl_folio_label(a), 200);
    PERFORM fl_posting_insert(ctx, r);
    PERFORM fl_log(ctx, t.property_id, 'transfer', t.id, 'create', jsonb_build_object(
        'kind', 'balance', 'from_folio_id', a.id, 'to_folio_id', b.id, 'amount', moved,
        'reason', t.reason));
    RETURN fl_transfer_result(t);
END
$$;

-- ---------------------------------------------------------------------------------------------
-- Business date and ledger checks
-- ---------------------------------------------------------------------------------------------

-- Closes the property's open business date: locks the property row FOR UPDATE (waiting for
-- every posting in flight, which hold it FOR SHARE), records the date as closed and moves the
-- business date one day forward. The night audit calls this at its end.
-- -> {"property", "closed", "business_date"}
CREATE FUNCTION fl_close_business_date(v_property_id bigint, v_actor text) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    pr properties;
    actor text := coalesce(nullif(btrim(v_actor), ''), 'system');
BEGIN
    SELECT * INTO pr FROM properties WHERE id = v_property_id FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM fl_fail('not_found', format('property %s does not exist', v_property_id));
    END IF;
    INSERT INTO business_dates (property_id, business_date, closed_by)
    VALUES (pr.id, pr.business_date, actor);
    UPDATE properties SET business_date = business_date + 1, updated_at = now(),
                          updated_by = actor
     WHERE id = pr.id;
    PERFORM fl_log(jsonb_build_object('user', actor), pr.id, 'business_date', pr.id, 'close',
                   jsonb_build_object('closed', pr.business_date,
                                      'business_date', pr.business_date + 1));
    RETURN jsonb_build_object('property', pr.code, 'closed', pr.business_date,
                              'business_date', pr.business_date + 1);
END
$$;

-- A folio's stored balance against the sum of its postings.
CREATE FUNCTION fl_folio_check(v_folio_id bigint) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('folio_id', f.id, 'number', f.number, 'balance', f.balance,
                              'postings_sum', x.s, 'postings', x.n, 'ok', f.balance = x.s)
      FROM folios f,
           LATERAL (SELECT coalesce(sum(p.amount), 0)::bigint AS s, count(*) AS n
                      FROM postings p WHERE p.folio_id = f.id) AS x
     WHERE f.id = v_folio_id
$$;

-- Every folio of a property (NULL: of every property) whose balance differs from the sum of
-- its postings. Empty when the ledger is sound.
CREATE FUNCTION fl_ledger_check(v_property_id bigint)
RETURNS TABLE (folio_id bigint, number text, balance bigint, postings_sum bigint)
LANGUAGE sql STABLE AS $$
    SELECT f.id, f.number, f.balance, coalesce(x.s, 0)::bigint
      FROM folios f
      LEFT JOIN (SELECT p.folio_id AS fid, sum(p.amount) AS s FROM postings p
                  WHERE v_property_id IS NULL OR p.property_id = v_property_id
                  GROUP BY p.folio_id) AS x ON x.fid = f.id
     WHERE (v_property_id IS NULL OR f.property_id = v_property_id)
       AND f.balance <> coalesce(x.s, 0)
$$;
