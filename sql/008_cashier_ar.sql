-- 008_cashier_ar.sql - cashier shifts and the city ledger (docs/cashier.md).
--
-- Cashier shifts: cashier_shifts (one open shift per user and property), postings.shift_id.
--   Every money line a user enters -- a payment or refund (type 'payment'), a paid-out (a
--   charge on a 'paid_out' code) and the void of either -- is tied to that user's open shift
--   in the posting's property by the BEFORE INSERT trigger postings_shift, whatever method
--   made it (folio.pay, stay.check_out, group.check_out, folio.void, ar.pay...). Without an
--   open shift the insert fails with no_open_shift and the whole call rolls back. A closed
--   shift never changes (trigger) and takes no posting (the trigger checks it is open, under
--   a FOR SHARE lock that cashier.close's FOR UPDATE waits for).
-- Paid-outs: folio.post with the code PAIDOUT (kind 'paid_out', created per property on first
--   use by fl_paid_out_code). api_folio_post of 005 is kept under the name fl_folio_post_charge
--   and wrapped: paid-out codes take their own path, everything else goes to it unchanged.
-- City ledger: ar_accounts (each with a folio of the new type 'city_ledger', whose balance is
--   the account's balance), ar_invoices (one per ar.transfer: the engine's balance transfer
--   from the guest folio to the account's folio, on the XFER code), ar_payments (a payment
--   posting on the account's folio, hence tied to the caller's shift) and ar_allocations. A
--   city-ledger folio takes postings only from these functions (use_ar otherwise).
--
-- Methods: cashier.open/close/report, ar.create/get/list/transfer/pay/aging.
-- Helpers meant for the night audit: fl_shift_figures(shift_id), fl_shift_json(shift, lines),
-- fl_ar_aging(property_id, account_id, as_of), fl_ar_check(property_id).
--
-- Applied once by the migrate command inside one transaction; never edited once landed.

-- ---------------------------------------------------------------------------------------------
-- Cashier shifts
-- ---------------------------------------------------------------------------------------------

-- A cashier's shift at one property: opened with a float, closed with the cash counted in the
-- drawer (declared). closing_report is the shift's figures as computed at closing.
CREATE TABLE cashier_shifts (
    id                   bigserial PRIMARY KEY,
    property_id          bigint NOT NULL REFERENCES properties (id),
    user_id              bigint NOT NULL REFERENCES users (id),
    username             text NOT NULL,
    status               text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'closed')),
    opening_float        bigint NOT NULL DEFAULT 0
                         CHECK (opening_float BETWEEN 0 AND 1000000000000),
    opened_at            timestamptz NOT NULL DEFAULT now(),
    opened_business_date date NOT NULL,
    closed_at            timestamptz,
    closed_by            text,
    closed_business_date date,
    declared             bigint CHECK (declared BETWEEN 0 AND 1000000000000),
    expected_cash        bigint,
    difference           bigint,
    closing_report       jsonb,
    note                 text CHECK (length(note) <= 200),
    UNIQUE (property_id, id),
    CHECK ((status = 'closed') = (closed_at IS NOT NULL)),
    CHECK (status = 'open'
           OR (closed_by IS NOT NULL AND closed_business_date IS NOT NULL AND declared IS NOT NULL
               AND expected_cash IS NOT NULL AND closing_report IS NOT NULL
               AND difference = declared - expected_cash)),
    CHECK (status = 'closed'
           OR (declared IS NULL AND expected_cash IS NULL AND difference IS NULL
               AND closing_report IS NULL))
);

CREATE UNIQUE INDEX cashier_shifts_one_open ON cashier_shifts (user_id, property_id)
    WHERE status = 'open';
CREATE INDEX cashier_shifts_property ON cashier_shifts (property_id, opened_at);

-- An open shift may only be closed; a closed shift never changes; no shift is ever deleted.
CREATE FUNCTION fl_cashier_shifts_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.status = 'closed' THEN
        PERFORM fl_fail('immutable', format('cashier shift %s is closed: it never changes', OLD.id));
    END IF;
    IF NEW.id <> OLD.id OR NEW.property_id <> OLD.property_id OR NEW.user_id <> OLD.user_id
       OR NEW.username <> OLD.username OR NEW.opening_float <> OLD.opening_float
       OR NEW.opened_at <> OLD.opened_at OR NEW.opened_business_date <> OLD.opened_business_date
    THEN
        PERFORM fl_fail('immutable', 'the user, property, float and opening of a cashier shift '
                        'never change');
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER cashier_shifts_guard BEFORE UPDATE ON cashier_shifts
    FOR EACH ROW EXECUTE FUNCTION fl_cashier_shifts_guard();
CREATE TRIGGER cashier_shifts_no_delete BEFORE DELETE ON cashier_shifts
    FOR EACH ROW EXECUTE FUNCTION fl_refuse_change();
CREATE TRIGGER cashier_shifts_no_truncate BEFORE TRUNCATE ON cashier_shifts
    FOR EACH STATEMENT EXECUTE FUNCTION fl_refuse_change();

-- The shift a money line belongs to. Set at insert time (postings are append-only).
ALTER TABLE postings ADD COLUMN shift_id bigint;
ALTER TABLE postings ADD FOREIGN KEY (property_id, shift_id)
    REFERENCES cashier_shifts (property_id, id);
CREATE INDEX postings_shift ON postings (shift_id, id) WHERE shift_id IS NOT NULL;

-- ---------------------------------------------------------------------------------------------
-- City-ledger folios
-- ---------------------------------------------------------------------------------------------

-- 'city_ledger': the folio of a city-ledger account (ar_accounts.folio_id). Never closes.
ALTER TABLE folios DROP CONSTRAINT folios_type_check;
ALTER TABLE folios ADD CONSTRAINT folios_type_check
    CHECK (type IN ('individual', 'master', 'non_guest', 'employee', 'control', 'semi_permanent',
                    'permanent', 'city_ledger'));

-- A city-ledger (accounts receivable) account: a company or a travel agency the hotel bills.
-- Its balance is the balance of its folio (type city_ledger), which only the functions below
-- post to: invoices (ar.transfer) raise it, payments (ar.pay) lower it. credit_limit NULL means
-- no limit.
CREATE TABLE ar_accounts (
    id           bigserial PRIMARY KEY,
    property_id  bigint NOT NULL REFERENCES properties (id),
    code         text NOT NULL CHECK (code ~ '^[A-Z0-9][A-Z0-9_-]{0,15}$'),
    name         text NOT NULL CHECK (btrim(name) <> '' AND length(name) <= 200),
    kind         text NOT NULL DEFAULT 'company' CHECK (kind IN ('company', 'agency')),
    contact      jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(contact) = 'object'),
    credit_limit bigint CHECK (credit_limit BETWEEN 0 AND 1000000000000),
    folio_id     bigint NOT NULL UNIQUE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    created_by   text NOT NULL DEFAULT current_user,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    updated_by   text NOT NULL DEFAULT current_user,
    UNIQUE (property_id, code),
    UNIQUE (property_id, id),
    FOREIGN KEY (property_id, folio_id) REFERENCES folios (property_id, id)
);

CREATE TRIGGER ar_accounts_no_delete BEFORE DELETE ON ar_accounts
    FOR EACH ROW EXECUTE FUNCTION fl_refuse_change();
CREATE TRIGGER ar_accounts_no_truncate BEFORE TRUNCATE ON ar_accounts
    FOR EACH STATEMENT EXECUTE FUNCTION fl_refuse_change();

-- One invoice: a folio balance moved to an account by ar.transfer (transfer_id: the engine's
-- balance transfer, whose two postings carry the amount). business_date dates it for the
-- aging. open_amount is what is left to pay; only allocations lower it.
CREATE TABLE ar_invoices (
    id            bigserial PRIMARY KEY,
    property_id   bigint NOT NULL REFERENCES properties (id),
    account_id    bigint NOT NULL,
    folio_id      bigint NOT NULL,
    transfer_id   bigint NOT NULL UNIQUE,
    business_date date NOT NULL,
    amount        bigint NOT NULL CHECK (amount BETWEEN 1 AND 1000000000000),
    open_amount   bigint NOT NULL,
    reference     text CHECK (length(reference) <= 64),
    created_at    timestamptz NOT NULL DEFAULT now(),
    created_by    text NOT NULL,
    user_id       bigint REFERENCES users (id),
    UNIQUE (property_id, id),
    FOREIGN KEY (property_id, account_id) REFERENCES ar_accounts (property_id, id),
    FOREIGN KEY (property_id, folio_id) REFERENCES folios (property_id, id),
    FOREIGN KEY (property_id, transfer_id) REFERENCES transfers (property_id, id),
    CHECK (open_amount BETWEEN 0 AND amount)
);

CREATE INDEX ar_invoices_account ON ar_invoices (account_id, business_date, id);
CREATE INDEX ar_invoices_open ON ar_invoices (account_id, business_date, id)
    WHERE open_amount > 0;
CREATE INDEX ar_invoices_folio ON ar_invoices (folio_id);

-- A payment received on an account: one payment posting on the account's folio (posting_id,
-- tied to the cashier's shift like every payment), split over invoices by ar_allocations.
CREATE TABLE ar_payments (
    id            bigserial PRIMARY KEY,
    property_id   bigint NOT NULL REFERENCES properties (id),
    account_id    bigint NOT NULL,
    posting_id    bigint NOT NULL UNIQUE,
    shift_id      bigint,
    trx_code_id   bigint NOT NULL,
    method        text NOT NULL,
    amount        bigint NOT NULL CHECK (amount BETWEEN 1 AND 1000000000000),
    business_date date NOT NULL,
    reference     text CHECK (length(reference) <= 64),
    created_at    timestamptz NOT NULL DEFAULT now(),
    created_by    text NOT NULL,
    user_id       bigint REFERENCES users (id),
    UNIQUE (property_id, id),
    FOREIGN KEY (property_id, account_id) REFERENCES ar_accounts (property_id, id),
    FOREIGN KEY (property_id, posting_id) REFERENCES postings (property_id, id),
    FOREIGN KEY (property_id, shift_id) REFERENCES cashier_shifts (property_id, id),
    FOREIGN KEY (property_id, trx_code_id) REFERENCES trx_codes (property_id, id)
);

CREATE INDEX ar_payments_account ON ar_payments (account_id, business_date, id);

CREATE TABLE ar_allocations (
    id          bigserial PRIMARY KEY,
    property_id bigint NOT NULL REFERENCES properties (id),
    payment_id  bigint NOT NULL,
    invoice_id  bigint NOT NULL,
    amount      bigint NOT NULL CHECK (amount BETWEEN 1 AND 1000000000000),
    UNIQUE (payment_id, invoice_id),
    FOREIGN KEY (property_id, payment_id) REFERENCES ar_payments (property_id, id),
    FOREIGN KEY (property_id, invoice_id) REFERENCES ar_invoices (property_id, id)
);

CREATE INDEX ar_allocations_invoice ON ar_allocations (invoice_id);

CREATE TRIGGER ar_payments_append_only BEFORE UPDATE OR DELETE ON ar_payments
    FOR EACH ROW EXECUTE FUNCTION fl_refuse_change();
CREATE TRIGGER ar_payments_no_truncate BEFORE TRUNCATE ON ar_payments
    FOR EACH STATEMENT EXECUTE FUNCTION fl_refuse_change();
CREATE TRIGGER ar_allocations_append_only BEFORE UPDATE OR DELETE ON ar_allocations
    FOR EACH ROW EXECUTE FUNCTION fl_refuse_change();
CREATE TRIGGER ar_allocations_no_truncate BEFORE TRUNCATE ON ar_allocations
    FOR EACH STATEMENT EXECUTE FUNCTION fl_refuse_change();

-- An invoice opens with its whole amount; afterwards only open_amount changes, and only
-- through an allocation (the trigger below, depth 2).
CREATE FUNCTION fl_ar_invoices_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF NEW.open_amount <> NEW.amount THEN
            PERFORM fl_fail('immutable', 'an invoice opens with its whole amount');
        END IF;
        RETURN NEW;
    END IF;
    IF pg_trigger_depth() < 2 THEN
        PERFORM fl_fail('immutable', 'an invoice changes only through payment allocations');
    END IF;
    IF (to_jsonb(NEW) - 'open_amount') <> (to_jsonb(OLD) - 'open_amount')
       OR NEW.open_amount > OLD.open_amount THEN
        PERFORM fl_fail('immutable', 'an allocation only lowers an invoice''s open amount');
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER ar_invoices_guard BEFORE INSERT OR UPDATE ON ar_invoices
    FOR EACH ROW EXECUTE FUNCTION fl_ar_invoices_guard();
CREATE TRIGGER ar_invoices_no_delete BEFORE DELETE ON ar_invoices
    FOR EACH ROW EXECUTE FUNCTION fl_refuse_change();
CREATE TRIGGER ar_invoices_no_truncate BEFORE TRUNCATE ON ar_invoices
    FOR EACH STATEMENT EXECUTE FUNCTION fl_refuse_change();

CREATE FUNCTION fl_ar_allocations_apply() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE ar_invoices SET open_amount = open_amount - NEW.amount WHERE id = NEW.invoice_id;
    RETURN NULL;
END
$$;

CREATE TRIGGER ar_allocations_apply AFTER INSERT ON ar_allocations
    FOR EACH ROW EXECUTE FUNCTION fl_ar_allocations_apply();

-- True inside the city-ledger functions below (transaction-local setting, reset after use).
CREATE FUNCTION fl_ar_posting_allowed() RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT coalesce(current_setting('foliod.city_ledger', true), '') = 'on'
$$;

CREATE FUNCTION fl_ar_posting_allow(v_on boolean) RETURNS void
LANGUAGE sql AS $$
    SELECT set_config('foliod.city_ledger', CASE WHEN v_on THEN 'on' ELSE '' END, true)
$$;

CREATE FUNCTION fl_folios_city_ledger_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM fl_fail('use_ar', format('folio %s is a city-ledger account''s folio: it never closes',
                                     OLD.number));
    RETURN NEW;
END
$$;

CREATE TRIGGER folios_city_ledger_open BEFORE UPDATE ON folios
    FOR EACH ROW WHEN (OLD.type = 'city_ledger' AND NEW.status <> 'open')
    EXECUTE FUNCTION fl_folios_city_ledger_guard();

-- Routing a stay's charges to a city-ledger folio would post there behind the ledger's back.
CREATE FUNCTION fl_routing_rules_city_ledger() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM folios f WHERE f.id = NEW.to_folio_id AND f.type = 'city_ledger') THEN
        PERFORM fl_fail('use_ar', 'charges cannot be routed to a city-ledger account: transfer '
                        'the balance with ar.transfer at checkout');
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER routing_rules_city_ledger BEFORE INSERT OR UPDATE OF to_folio_id ON routing_rules
    FOR EACH ROW EXECUTE FUNCTION fl_routing_rules_city_ledger();

-- ---------------------------------------------------------------------------------------------
-- The posting trigger: city-ledger folios and cashier shifts
-- ---------------------------------------------------------------------------------------------

-- A money line: what changes the cash or card totals of a cashier's drawer.
CREATE FUNCTION fl_is_money_line(v_type text, v_kind text) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT v_type = 'payment'
           OR (v_type = 'charge' AND v_kind = 'paid_out')
           OR (v_type = 'void' AND v_kind IN ('payment', 'paid_out'))
$$;

-- Runs after postings_guard (trigger names fire in alphabetical order). A line entered by a
-- user (user_id set) that moves money gets the user's open shift in the posting's property,
-- locked FOR SHARE so that a concurrent cashier.close waits for this transaction. Lines of the
-- system (no user, no outlet: scripts, the night audit) and of POS outlets (which post charges
-- only) carry no shift.
CREATE FUNCTION fl_postings_shift() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_kind text;
    v_ftype text;
    sh cashier_shifts;
BEGIN
    SELECT type INTO v_ftype FROM folios WHERE id = NEW.folio_id;
    IF v_ftype = 'city_ledger' AND NOT fl_ar_posting_allowed() THEN
        PERFORM fl_fail('use_ar',
                        format('folio %s is a city-ledger account: it takes invoices through '
                               'ar.transfer and payments through ar.pay only', NEW.folio_id));
    END IF;
    SELECT kind INTO v_kind FROM trx_codes WHERE id = NEW.trx_code_id;
    IF NOT fl_is_money_line(NEW.type, v_kind) THEN
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

CREATE TRIGGER postings_shift BEFORE INSERT ON postings
    FOR EACH ROW EXECUTE FUNCTION fl_postings_shift();

-- ---------------------------------------------------------------------------------------------
-- Paid-outs
-- ---------------------------------------------------------------------------------------------

-- The paid-out code of a property (kind 'paid_out', code PAIDOUT), created on first use.
CREATE FUNCTION fl_paid_out_code(v_property_id bigint) RETURNS trx_codes
LANGUAGE plpgsql AS $$
DECLARE
    c trx_codes;
BEGIN
    SELECT * INTO c FROM trx_codes
     WHERE property_id = v_property_id AND kind = 'paid_out' ORDER BY id LIMIT 1;
    IF FOUND THEN
        RETURN c;
    END IF;
    INSERT INTO trx_codes (property_id, code, description, department, kind, created_by,
                           updated_by)
    VALUES (v_property_id, 'PAIDOUT', 'Paid out', 'paid_out', 'paid_out', 'system', 'system')
    ON CONFLICT (property_id, code) DO NOTHING
    RETURNING * INTO c;
    IF c.id IS NULL THEN
        SELECT * INTO c FROM trx_codes WHERE property_id = v_property_id AND code = 'PAIDOUT';
        IF c.kind <> 'paid_out' THEN
            PERFORM fl_fail('conflict', 'transaction code PAIDOUT is taken by a ' || c.kind
                            || ' code; it is reserved for cash paid-outs');
        END IF;
        RETURN c;
    END IF;
    PERFORM fl_log(NULL, v_property_id, 'trx_code', c.id, 'create', fl_trx_code_json(c));
    RETURN c;
END
$$;

-- Posts a paid-out: cash handed out of the drawer for a guest (a florist, a taxi), charged to
-- the folio on a paid_out code: one line, no tax; routing applies as for a charge. The posting
-- trigger ties it to the caller's open shift. Same answer as fl_post_charge.
CREATE FUNCTION fl_post_paid_out(ctx jsonb, f folios, c trx_codes, v_amount bigint,
                                 v_quantity integer, v_description text, v_reference text)
RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    rt record;
    r postings;
    gross bigint := v_amount * v_quantity;
    warnings text[] := '{}';
    data jsonb := '{}';
    over jsonb;
BEGIN
    IF v_amount <= 0 THEN
        PERFORM fl_fail('invalid_params', 'a paid-out amount must be positive (void a paid-out '
                        'to cancel it)');
    END IF;
    IF gross > 1000000000000 THEN
        PERFORM fl_fail('invalid_params', 'amount x quantity must be between -10^12 and 10^12');
    END IF;
    IF NOT c.enabled THEN
        PERFORM fl_fail('invalid_code', format('%s is a disabled paid-out code', c.code));
    END IF;
    PERFORM 1 FROM properties WHERE id = f.property_id FOR SHARE;
    rt := fl_route_target(f, c);
    IF rt.target_closed IS NOT NULL THEN
        warnings := warnings || 'routing_target_closed'::text;
        data := data || jsonb_build_object('routing_target_folio_id', rt.target_closed);
    END IF;
    -- a manager's late paid-out on a checked-out stay reopens the window, as for a charge
    PERFORM fl_folio_for_posting(ctx, rt.folio_id, fl_ctx_is(ctx, 'manager'));
    r.property_id := f.property_id;
    r.folio_id := rt.folio_id;
    r.trx_code_id := c.id;
    r.type := 'charge';
    r.amount := gross;
    r.quantity := v_quantity;
    r.unit_amount := v_amount;
    r.description := coalesce(nullif(btrim(v_description), ''), c.description);
    r.reference := nullif(btrim(v_reference), '');
    r.source := fl_ctx_source(ctx);
    r.routed_from_folio_id := CASE WHEN rt.routed THEN f.id END;
    r := fl_posting_insert(ctx, r);
    over := fl_credit_over(r.folio_id);
    IF over IS NOT NULL THEN
        warnings := warnings || 'deposit_required'::text;
        data := data || over;
    END IF;
    PERFORM fl_log(ctx, f.property_id, 'folio', r.folio_id, 'paid_out', jsonb_build_object(
        'posting_id', r.id, 'code', c.code, 'amount', gross, 'quantity', v_quantity,
        'shift_id', r.shift_id, 'source', r.source,
        'routed_from_folio_id', r.routed_from_folio_id));
    RETURN fl_post_result(r.folio_id, ARRAY[r], rt.routed, r.routed_from_folio_id, warnings, data);
END
$$;

-- folio.post: the method of 005 stays as it is under another name; a paid-out code (PAIDOUT,
-- created on first use, or any code of kind paid_out) takes fl_post_paid_out.
ALTER FUNCTION api_folio_post(jsonb, jsonb) RENAME TO fl_folio_post_charge;

CREATE FUNCTION api_folio_post(ctx jsonb, p jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v_code text;
    f folios;
    c trx_codes;
BEGIN
    p := fl_params(p);
    v_code := CASE WHEN jsonb_typeof(p -> 'code') = 'string' THEN btrim(p ->> 'code') END;
    IF v_code IS NULL
       OR NOT (v_code = 'PAIDOUT'
               OR EXISTS (SELECT 1 FROM trx_codes x WHERE x.code = v_code AND x.kind = 'paid_out'))
    THEN
        RETURN fl_folio_post_charge(ctx, p);
    END IF;
    PERFORM fl_check_keys(p, ARRAY['folio_id', 'stay_id', 'window', 'code', 'amount', 'quantity',
                                   'description', 'reference'], '');
    f := fl_p_folio_target(ctx, p);
    SELECT * INTO c FROM trx_codes WHERE property_id = f.property_id AND code = v_code;
    IF NOT FOUND AND v_code = 'PAIDOUT' THEN
        c := fl_paid_out_code(f.property_id);
    END IF;
    IF c.id IS NULL OR c.kind <> 'paid_out' THEN
        RETURN fl_folio_post_charge(ctx, p);
    END IF;
    RETURN fl_post_paid_out(ctx, f, c, fl_p_amount(p, 'amount', '', true),
                            coalesce(fl_p_int(p, 'quantity', '', false, 1, 999), 1)::integer,
                            fl_p_text(p, 'description', '', false, 200),
                            fl_p_text(p, 'reference', '', false, 64));
END
$$;

-- ---------------------------------------------------------------------------------------------
-- Shift figures and JSON
-- ---------------------------------------------------------------------------------------------

-- The figures of a shift, from the postings tied to it:
--   by_method  per payment method: count (lines), received (money taken in: payments less the
--              voids of payments), refunded (money given back: refunds less the voids of
--              refunds), net = received - refunded;
--   by_code    the same per payment code;
--   paid_outs  {count, amount}: paid-outs less their voids;
--   voids      {count, amount}: the void lines among the shift's lines;
--   cash       {float, received, refunded, paid_out, expected}: paid-outs are always cash, so
--              expected = float + cash received - cash refunded - paid-outs;
--   expected_cash (= cash.expected), postings (the number of lines).
CREATE FUNCTION fl_shift_figures(v_shift_id bigint) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    WITH l AS (
        SELECT p.type, p.amount, c.kind, c.code, c.payment_method AS method,
               CASE WHEN c.kind = 'payment'
                         AND ((p.type = 'payment' AND p.amount < 0)
                              OR (p.type = 'void' AND p.amount > 0))
                    THEN -p.amount ELSE 0 END AS rin,
               CASE WHEN c.kind = 'payment'
                         AND ((p.type = 'payment' AND p.amount > 0)
                              OR (p.type = 'void' AND p.amount < 0))
                    THEN p.amount ELSE 0 END AS rout
          FROM postings p JOIN trx_codes c ON c.id = p.trx_code_id
         WHERE p.shift_id = v_shift_id
    ), m AS (
        SELECT l.method, count(*) AS n, sum(l.rin)::bigint AS rin, sum(l.rout)::bigint AS rout
          FROM l WHERE l.kind = 'payment' GROUP BY l.method
    ), k AS (
        SELECT l.code, l.method, count(*) AS n, sum(l.rin)::bigint AS rin,
               sum(l.rout)::bigint AS rout
          FROM l WHERE l.kind = 'payment' GROUP BY l.code, l.method
    ), t AS (
        SELECT coalesce(sum(l.rin) FILTER (WHERE l.method = 'cash'), 0)::bigint AS cash_in,
               coalesce(sum(l.rout) FILTER (WHERE l.method = 'cash'), 0)::bigint AS cash_out,
               count(*) FILTER (WHERE l.kind = 'paid_out' AND l.type = 'charge') AS po_n,
               coalesce(sum(l.amount) FILTER (WHERE l.kind = 'paid_out'), 0)::bigint AS po_amt,
               count(*) FILTER (WHERE l.type = 'void') AS v_n,
               coalesce(sum(l.amount) FILTER (WHERE l.type = 'void'), 0)::bigint AS v_amt,
               count(*) AS n
          FROM l
    )
    SELECT jsonb_build_object(
        'by_method', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                                 'method', m.method, 'count', m.n, 'received', m.rin,
                                 'refunded', m.rout, 'net', m.rin - m.rout) ORDER BY m.method),
                             '[]'::jsonb) FROM m),
        'by_code', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                               'code', k.code, 'method', k.method, 'count', k.n,
                               'received', k.rin, 'refunded', k.rout, 'net', k.rin - k.rout)
                               ORDER BY k.code), '[]'::jsonb) FROM k),
        'paid_outs', jsonb_build_object('count', t.po_n, 'amount', t.po_amt),
        'voids', jsonb_build_object('count', t.v_n, 'amount', t.v_amt),
        'cash', jsonb_build_object('float', s.opening_float, 'received', t.cash_in,
                                   'refunded', t.cash_out, 'paid_out', t.po_amt,
                                   'expected', s.opening_float + t.cash_in - t.cash_out
                                               - t.po_amt),
        'expected_cash', s.opening_float + t.cash_in - t.cash_out - t.po_amt,
        'postings', t.n)
      FROM t, cashier_shifts s
     WHERE s.id = v_shift_id
$$;

-- The money lines of a shift, oldest first (account: the city-ledger account of an ar.pay).
CREATE FUNCTION fl_shift_lines_json(v_shift_id bigint) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT coalesce(jsonb_agg(jsonb_build_object(
               'id', p.id, 'business_date', p.business_date, 'folio_id', p.folio_id,
               'folio_number', f.number, 'account', a.code, 'type', p.type, 'code', c.code,
               'kind', c.kind, 'method', c.payment_method, 'amount', p.amount,
               'description', p.description, 'reference', p.reference,
               'created_at', p.created_at) ORDER BY p.id), '[]'::jsonb)
      FROM postings p
      JOIN trx_codes c ON c.id = p.trx_code_id
      JOIN folios f ON f.id = p.folio_id
      LEFT JOIN ar_accounts a ON a.folio_id = p.folio_id
     WHERE p.shift_id = v_shift_id
$$;

-- A shift with its report: the figures (live while open; as recorded at closing once closed),
-- declared and difference (declared - expected: negative = cash short), and with v_lines the
-- money lines.
CREATE FUNCTION fl_shift_json(sh cashier_shifts, v_lines boolean DEFAULT true) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', sh.id, 'property', fl_property_code(sh.property_id), 'property_id', sh.property_id,
        'user', sh.username, 'user_id', sh.user_id, 'status', sh.status,
        'float', sh.opening_float, 'opened_at', sh.opened_at,
        'opened_business_date', sh.opened_business_date, 'closed_at', sh.closed_at,
        'closed_by', sh.closed_by, 'closed_business_date', sh.closed_business_date,
        'declared', sh.declared, 'difference', sh.difference, 'note', sh.note)
        || CASE WHEN sh.status = 'closed' THEN sh.closing_report
                ELSE fl_shift_figures(sh.id) END
        || CASE WHEN v_lines THEN jsonb_build_object('lines', fl_shift_lines_json(sh.id))
                ELSE '{}'::jsonb END
$$;

-- ---------------------------------------------------------------------------------------------
-- cashier.open / close / report
-- ---------------------------------------------------------------------------------------------

CREATE FUNCTION fl_ctx_user_id(ctx jsonb) RETURNS bigint
LANGUAGE sql IMMUTABLE AS $$
    SELECT (ctx ->> 'user_id')::bigint
$$;

CREATE FUNCTION api_cashier_open(ctx jsonb, p jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    prop properties;
    sh cashier_shifts;
    v_user bigint := fl_ctx_user_id(ctx);
    v_float bigint;
BEGIN
    p := fl_params(p);
    PERFORM fl_check_keys(p, ARRAY['float', 'property'], '');
    IF v_user IS NULL THEN
        PERFORM fl_fail('forbidden', 'a cashier shift belongs to a logged-in user');
    END IF;
    PERFORM fl_require_role(ctx, 'cashier.open', 'cashier', 'manager');
    v_float := coalesce(fl_p_amount(p, 'float', '', false, 0), 0);
    prop := fl_property_scope(ctx, p);
    SELECT * INTO sh FROM cashier_shifts
     WHERE user_id = v_user AND property_id = prop.id AND status = 'open';
    IF FOUND THEN
        PERFORM fl_fail_data('shift_already_open',
                             format('%s already has shift %s open in property %s since %s',
                                    sh.username, sh.id, prop.code, sh.opened_at),
                             jsonb_build_object('shift_id', sh.id));
    END IF;
    BEGIN
        INSERT INTO cashier_shifts (property_id, user_id, username, opening_float,
                                    opened_business_date)
        VALUES (prop.id, v_user, fl_actor(ctx), v_float, prop.business_date)
        RETURNING * INTO sh;
    EXCEPTION WHEN unique_violation THEN
        SELECT * INTO sh FROM cashier_shifts
         WHERE user_id = v_user AND property_id = prop.id AND status = 'open';
        PERFORM fl_fail_data('shift_already_open',
                             format('%s already has shift %s open in property %s', fl_actor(ctx),
                                    sh.id, prop.code),
                             jsonb_build_object('shift_id', sh.id));
    END;
    PERFORM fl_log(ctx, prop.id, 'cashier_shift', sh.id, 'open',
                   jsonb_build_object('user', sh.username, 'float', sh.opening_float,
                                      'business_date', sh.opened_business_date));
    RETURN fl_shift_json(sh, true);
END
$$;

-- The shift a close or report without shift_id means: the user's open shift (in the caller's
-- property, if bound to one), else with v_latest their most recent one.
CREATE FUNCTION fl_shift_of_user(ctx jsonb, v_user bigint, v_latest boolean) RETURNS bigint
LANGUAGE plpgsql STABLE AS $$
DECLARE
    ids bigint[];
BEGIN
    SELECT array_agg(s.id ORDER BY s.id) INTO ids FROM cashier_shifts s
     WHERE s.user_id = v_user AND s.status = 'open'
       AND (fl_ctx_property(ctx) IS NULL OR s.property_id = fl_ctx_property(ctx));
    IF cardinality(ids) > 1 THEN
        PERFORM fl_fail('invalid_params', format('shifts %s are open in several properties: give '
                                                 'shift_id', array_to_string(ids, ', ')));
    END IF;
    IF cardinality(ids) = 1 THEN
        RETURN ids[1];
    END IF;
    IF v_latest THEN
        RETURN (SELECT s.id FROM cashier_shifts s
                 WHERE s.user_id = v_user
                   AND (fl_ctx_property(ctx) IS NULL OR s.property_id = fl_ctx_property(ctx))
                 ORDER BY s.opened_at DESC, s.id DESC LIMIT 1);
    END IF;
    RETURN NULL;
END
$$;

-- A shift the caller may see: cashiers their own, managers, auditors and admins any shift of
-- their properties.
CREATE FUNCTION fl_shift_find(ctx jsonb, v_id bigint, v_lock boolean) RETURNS cashier_shifts
LANGUAGE plpgsql AS $$
DECLARE
    sh cashier_shifts;
BEGIN
    IF v_lock THEN
        SELECT * INTO sh FROM cashier_shifts WHERE id = v_id FOR UPDATE;
    ELSE
        SELECT * INTO sh FROM cashier_shifts WHERE id = v_id;
    END IF;
    IF NOT FOUND THEN
        PERFORM fl_fail('not_found', format('cashier shift %s does not exist', v_id));
    END IF;
    PERFORM fl_scope_check(ctx, sh.property_id, format('cashier shift %s', v_id));
    IF fl_ctx_role(ctx) = 'cashier' AND sh.user_id IS DISTINCT FROM fl_ctx_user_id(ctx) THEN
        PERFORM fl_fail('forbidden', format('cashier shift %s is %s''s: a cashier sees their own '
                                            'shifts only', v_id, sh.username));
    END IF;
    RETURN sh;
END
$$;

CREATE FUNCTION api_cashier_close(ctx jsonb, p jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    sh cashier_shifts;
    v_id bigint;
    v_declared bigint;
    v_note text;
    fig jsonb;
    expected bigint;
    open_date date;
BEGIN
    p := fl_params(p);
    PERFORM fl_check_keys(p, ARRAY['shift_id', 'declared', 'note'], '');
    v_id := fl_p_id(p, 'shift_id', '', false);
    v_declared := fl_p_amount(p, 'declared', '', true, 0);
    v_note := fl_p_text(p, 'note', '', false, 200);
    IF v_id IS NULL THEN
        v_id := fl_shift_of_user(ctx, fl_ctx_user_id(ctx), false);
        IF v_id IS NULL THEN
            PERFORM fl_fail('no_open_shift', format('%s has no open cashier shift',
                                                    fl_actor(ctx)));
        END IF;
    END IF;
    sh := fl_shift_find(ctx, v_id, true);
    -- a manager may close a shift a cashier left open (counting the drawer for them)
    IF sh.user_id IS DISTINCT FROM fl_ctx_user_id(ctx) AND NOT fl_ctx_is(ctx, 'manager') THEN
        PERFORM fl_fail('forbidden', format('cashier shift %s is %s''s', sh.id, sh.username));
    END IF;
    IF sh.status = 'closed' THEN
        PERFORM fl_fail_data('shift_closed',
                             format('cashier shift %s was closed at %s by %s', sh.id,
                                    sh.closed_at, sh.closed_by),
                             jsonb_build_object('shift_id', sh.id));
    END IF;
    fig := fl_shift_figures(sh.id);
    expected := (fig ->> 'expected_cash')::bigint;
    SELECT business_date INTO open_date FROM properties WHERE id = sh.property_id;
    UPDATE cashier_shifts
       SET status = 'closed', closed_at = now(), closed_by = fl_actor(ctx),
           closed_business_date = open_date, declared = v_declared, expected_cash = expected,
           difference = v_declared - expected, closing_report = fig, note = v_note
     WHERE id = sh.id
    RETURNING * INTO sh;
    PERFORM fl_log(ctx, sh.property_id, 'cashier_shift', sh.id, 'close',
                   jsonb_build_object('user', sh.username, 'declared', v_declared,
                                      'expected_cash', expected,
                                      'difference', sh.difference, 'note', v_note));
    RETURN fl_shift_json(sh, true);
END
$$;

CREATE FUNCTION api_cashier_report(ctx jsonb, p jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v_id bigint;
    v_username text;
    v_user bigint;
BEGIN
    p := fl_params(p);
    PERFORM fl_check_keys(p, ARRAY['shift_id', 'user'], '');
    v_id := fl_p_id(p, 'shift_id', '', false);
    v_username := fl_p_text(p, 'user', '', false, 64);
    IF v_id IS NOT NULL AND v_username IS NOT NULL THEN
        PERFORM fl_fail('invalid_params', 'give shift_id or user, not both');
    END IF;
    IF v_id IS NULL THEN
        IF v_username IS NULL THEN
            v_user := fl_ctx_user_id(ctx);
        ELSE
            SELECT u.id INTO v_user FROM users u WHERE u.username = v_username;
            IF v_user IS NULL THEN
                PERFORM fl_fail('not_found', format('user %s does not exist', v_username));
            END IF;
            IF fl_ctx_role(ctx) = 'cashier' AND v_user IS DISTINCT FROM fl_ctx_user_id(ctx) THEN
                PERFORM fl_fail('forbidden', 'a cashier sees their own shifts only');
            END IF;
        END IF;
        v_id := fl_shift_of_user(ctx, v_user, true);
        IF v_id IS NULL THEN
            PERFORM fl_fail('not_found', format('%s has no cashier shift',
                                                coalesce(v_username, fl_actor(ctx))));
        END IF;
    END IF;
    RETURN fl_shift_json(fl_shift_find(ctx, v_id, false), true);
END
$$;

-- ---------------------------------------------------------------------------------------------
-- City ledger: JSON
-- ---------------------------------------------------------------------------------------------

CREATE FUNCTION fl_ar_account_json(a ar_accounts) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', a.id, 'property', fl_property_code(a.property_id), 'property_id', a.property_id,
        'code', a.code, 'name', a.name, 'kind', a.kind, 'contact', a.contact,
        'credit_limit', a.credit_limit, 'balance', f.balance,
        'available', a.credit_limit - f.balance,
        'open_invoices', (SELECT count(*) FROM ar_invoices i
                           WHERE i.account_id = a.id AND i.open_amount > 0),
        'folio_id', a.folio_id, 'folio_number', f.number,
        'created_at', a.created_at, 'created_by', a.created_by,
        'updated_at', a.updated_at, 'updated_by', a.updated_by)
      FROM folios f WHERE f.id = a.folio_id
$$;

-- An invoice with where it came from (the folio, its stay, guest and room) and its age in days
-- on the property's business date.
CREATE FUNCTION fl_ar_invoice_json(i ar_invoices) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', i.id, 'account', a.code, 'account_id', i.account_id,
        'business_date', i.business_date, 'age_days', pr.business_date - i.business_date,
        'amount', i.amount, 'open_amount', i.open_amount, 'paid', i.amount - i.open_amount,
        'status', CASE WHEN i.open_amount = 0 THEN 'paid' ELSE 'open' END,
        'reference', i.reference, 'folio_id', i.folio_id, 'folio_number', f.number,
        'stay_id', f.stay_id, 'stay_number', s.number, 'room', r.number,
        'guest', coalesce(g.first_name || ' ' || g.last_name, f.name),
        'transfer_id', i.transfer_id, 'created_at', i.created_at, 'created_by', i.created_by)
      FROM ar_accounts a
      JOIN properties pr ON pr.id = a.property_id
      JOIN folios f ON f.id = i.folio_id
      LEFT JOIN stays s ON s.id = f.stay_id
      LEFT JOIN rooms r ON r.id = s.room_id
      LEFT JOIN guests g ON g.id = s.guest_id
     WHERE a.id = i.account_id
$$;

CREATE FUNCTION fl_ar_payment_json(y ar_payments) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', y.id, 'account', a.code, 'account_id', y.account_id, 'amount', y.amount,
        'method', y.method, 'code', c.code, 'business_date', y.business_date,
        'reference', y.reference, 'posting_id', y.posting_id, 'shift_id', y.shift_id,
        'created_at', y.created_at, 'created_by', y.created_by,
        'allocations', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                                   'invoice_id', l.invoice_id, 'amount', l.amount)
                                   ORDER BY l.id), '[]'::jsonb)
                          FROM ar_allocations l WHERE l.payment_id = y.id))
      FROM ar_accounts a, trx_codes c
     WHERE a.id = y.account_id AND c.id = y.trx_code_id
$$;

-- An account by id or by code (in the property), with its scope checked and optionally
-- locked: a transfer or a payment locks the account first, then the property and folios.
CREATE FUNCTION fl_ar_account_find(ctx jsonb, v_property_id bigint, v_id bigint, v_code text,
                                   v_lock boolean) RETURNS ar_accounts
LANGUAGE plpgsql AS $$
DECLARE
    a ar_accounts;
BEGIN
    IF v_id IS NOT NULL THEN
        SELECT * INTO a FROM ar_accounts WHERE id = v_id;
    ELSE
        SELECT * INTO a FROM ar_accounts WHERE property_id = v_property_id AND code = v_code;
    END IF;
    IF NOT FOUND THEN
        PERFORM fl_fail('not_found', format('city-ledger account %s does not exist',
                                            coalesce(v_code, v_id::text)));
    END IF;
    PERFORM fl_scope_check(ctx, a.property_id, format('city-ledger account %s', a.code));
    IF v_lock THEN
        SELECT * INTO a FROM ar_accounts WHERE id = a.id FOR UPDATE;
    END IF;
    RETURN a;
END
$$;

CREATE FUNCTION fl_p_ar_contact(p jsonb) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    c jsonb := fl_p_object(p, 'contact', '', false);
    res jsonb := '{}';
    k text;
    v text;
BEGIN
    IF c IS NULL THEN
        RETURN res;
    END IF;
    PERFORM fl_check_keys(c, ARRAY['name', 'email', 'phone', 'address', 'tax_id', 'notes'],
                          'contact.');
    FOREACH k IN ARRAY ARRAY['name', 'email', 'phone', 'address', 'tax_id', 'notes'] LOOP
        v := fl_p_text(c, k, 'contact.', false,
                       CASE k WHEN 'address' THEN 500 WHEN 'notes' THEN 1000 ELSE 200 END);
        IF v IS NOT NULL THEN
            res := res || jsonb_build_object(k, v);
        END IF;
    END LOOP;
    IF res ? 'email' AND (res ->> 'email') !~ '^[^@\s]+@[^@\s]+$' THEN
        PERFORM fl_fail('invalid_params', 'contact.email must be an e-mail address (name@domain)');
    END IF;
    RETURN res;
END
$$;

-- ---------------------------------------------------------------------------------------------
-- City ledger: methods
-- ---------------------------------------------------------------------------------------------

CREATE FUNCTION api_ar_create(ctx jsonb, p jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    prop properties;
    a ar_accounts;
    f folios;
BEGIN
    p := fl_params(p);
    PERFORM fl_check_keys(p, ARRAY['property', 'code', 'name', 'kind', 'contact', 'credit_limit'],
                          '');
    PERFORM fl_require_role(ctx, 'ar.create', 'manager');
    prop := fl_property_scope(ctx, p);
    a.code := fl_p_code(p, 'code', '', true);
    a.name := fl_p_text(p, 'name', '', true, 200);
    a.kind := coalesce(fl_p_enum(p, 'kind', '', false, ARRAY['company', 'agency']), 'company');
    a.contact := fl_p_ar_contact(p);
    a.credit_limit := fl_p_amount(p, 'credit_limit', '', false, 0);
    IF EXISTS (SELECT 1 FROM ar_accounts x WHERE x.property_id = prop.id AND x.code = a.code) THEN
        PERFORM fl_fail('conflict', format('city-ledger account %s already exists in property %s',
                                           a.code, prop.code));
    END IF;
    INSERT INTO folios (property_id, type, name, created_by, updated_by)
    VALUES (prop.id, 'city_ledger', a.name, fl_actor(ctx), fl_actor(ctx))
    RETURNING * INTO f;
    BEGIN
        INSERT INTO ar_accounts (property_id, code, name, kind, contact, credit_limit, folio_id,
                                 created_by, updated_by)
        VALUES (prop.id, a.code, a.name, a.kind, a.contact, a.credit_limit, f.id, fl_actor(ctx),
                fl_actor(ctx))
        RETURNING * INTO a;
    EXCEPTION WHEN unique_violation THEN
        PERFORM fl_fail('conflict', format('city-ledger account %s already exists in property %s',
                                           a.code, prop.code));
    END;
    PERFORM fl_log(ctx, prop.id, 'folio', f.id, 'create', fl_folio_json(f));
    PERFORM fl_log(ctx, prop.id, 'ar_account', a.id, 'create', fl_ar_account_json(a));
    RETURN fl_ar_account_json(a);
END
$$;

-- ar.get: the account with its invoices (open ones first, then the paid ones, newest first)
-- and its payments (newest first).
CREATE FUNCTION api_ar_get(ctx jsonb, p jsonb) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
    a ar_accounts;
    v_id bigint;
    v_code text;
    prop properties;
BEGIN
    p := fl_params(p);
    PERFORM fl_check_keys(p, ARRAY['property', 'account_id', 'code'], '');
    v_id := fl_p_id(p, 'account_id', '', false);
    v_code := fl_p_code(p, 'code', '', false);
    IF (v_id IS NULL) = (v_code IS NULL) THEN
        PERFORM fl_fail('invalid_params', 'give account_id or code');
    END IF;
    IF v_code IS NOT NULL THEN
        prop := fl_property_scope(ctx, p);
    END IF;
    a := fl_ar_account_find(ctx, prop.id, v_id, v_code, false);
    RETURN fl_ar_account_json(a) || jsonb_build_object(
        'invoices', (SELECT coalesce(jsonb_agg(fl_ar_invoice_json(i)
                                               ORDER BY i.open_amount = 0, i.business_date DESC,
                                                        i.id DESC), '[]'::jsonb)
                       FROM ar_invoices i WHERE i.account_id = a.id),
        'payments', (SELECT coalesce(jsonb_agg(fl_ar_payment_json(y)
                                               ORDER BY y.business_date DESC, y.id DESC),
                                     '[]'::jsonb)
                       FROM ar_payments y WHERE y.account_id = a.id));
END
$$;

CREATE FUNCTION api_ar_list(ctx jsonb, p jsonb) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_prop bigint;
BEGIN
    p := fl_params(p);
    PERFORM fl_check_keys(p, ARRAY['property'], '');
    v_prop := fl_property_filter(ctx, p);
    RETURN jsonb_build_object('items', coalesce(
        (SELECT jsonb_agg(fl_ar_account_json(a) ORDER BY pr.code, a.code)
           FROM ar_accounts a JOIN properties pr ON pr.id = a.property_id
          WHERE v_prop IS NULL OR a.property_id = v_prop),
        '[]'::jsonb));
END
$$;

-- ar.transfer: a folio's balance (or part of it) to a city-ledger account, as one invoice. The
-- money moves with the engine's balance transfer (fl_transfer_balance, code XFER): a
-- transfer_out on the folio, a transfer_in on the account's folio. Refused for closed folios
-- (folio_closed), a zero or credit balance (nothing_to_transfer), more than the balance, and
-- beyond the account's credit limit (credit_limit).
CREATE FUNCTION api_ar_transfer(ctx jsonb, p jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    f folios;
    a ar_accounts;
    acc_folio folios;
    v_amount bigint;
    v_ref text;
    moved bigint;
    t jsonb;
    inv ar_invoices;
BEGIN
    p := fl_params(p);
    PERFORM fl_check_keys(p, ARRAY['folio_id', 'account', 'amount', 'reference'], '');
    f := fl_folio_find(ctx, fl_p_id(p, 'folio_id', '', true));
    a.code := fl_p_code(p, 'account', '', true);
    v_amount := fl_p_amount(p, 'amount', '', false, 1);
    v_ref := fl_p_text(p, 'reference', '', false, 64);
    IF f.type = 'city_ledger' THEN
        PERFORM fl_fail('invalid_params', format('folio %s is itself a city-ledger account',
                                                 f.number));
    END IF;
    a := fl_ar_account_find(ctx, f.property_id, NULL, a.code, true);
    PERFORM fl_transfer_folios(ctx, f.id, a.folio_id);
    SELECT * INTO f FROM folios WHERE id = f.id;
    SELECT * INTO acc_folio FROM folios WHERE id = a.folio_id;
    IF f.balance <= 0 THEN
        PERFORM fl_fail_data('nothing_to_transfer',
                             format('folio %s has a balance of %s: only a balance due goes to the '
                                    'city ledger', f.number, f.balance),
                             jsonb_build_object('folio_id', f.id, 'balance', f.balance));
    END IF;
    IF v_amount > f.balance THEN
        PERFORM fl_fail('invalid_params', format('amount %s exceeds the balance of folio %s (%s)',
                                                 v_amount, f.number, f.balance));
    END IF;
    moved := coalesce(v_amount, f.balance);
    IF a.credit_limit IS NOT NULL AND acc_folio.balance + moved > a.credit_limit THEN
        PERFORM fl_fail_data('credit_limit',
                             format('account %s: a balance of %s plus %s exceeds its credit limit '
                                    'of %s', a.code, acc_folio.balance, moved, a.credit_limit),
                             jsonb_build_object('account', a.code, 'credit_limit', a.credit_limit,
                                                'balance', acc_folio.balance, 'amount', moved,
                                                'available', a.credit_limit - acc_folio.balance));
    END IF;
    PERFORM fl_ar_posting_allow(true);
    t := fl_transfer_balance(ctx, f.id, a.folio_id, moved,
                             left('City ledger ' || a.code || coalesce(' ' || v_ref, ''), 200));
    PERFORM fl_ar_posting_allow(false);
    INSERT INTO ar_invoices (property_id, account_id, folio_id, transfer_id, business_date,
                             amount, open_amount, reference, created_by, user_id)
    SELECT a.property_id, a.id, f.id, (t ->> 'transfer_id')::bigint, pr.business_date, moved,
           moved, v_ref, fl_actor(ctx), fl_ctx_user_id(ctx)
      FROM properties pr WHERE pr.id = a.property_id
    RETURNING * INTO inv;
    PERFORM fl_log(ctx, a.property_id, 'ar_invoice', inv.id, 'create', jsonb_build_object(
        'account', a.code, 'folio_id', f.id, 'amount', moved, 'transfer_id', inv.transfer_id,
        'business_date', inv.business_date, 'reference', v_ref));
    SELECT * INTO a FROM ar_accounts WHERE id = a.id;
    RETURN jsonb_build_object(
        'invoice', fl_ar_invoice_json(inv), 'account', fl_ar_account_json(a),
        'folio', (SELECT fl_folio_brief(x) FROM folios x WHERE x.id = f.id),
        'transfer', t - 'warnings' - 'data');
END
$$;

-- ar.pay: a payment received on an account, applied to invoices: the allocations given (they
-- must add up to the amount), else the oldest open invoices first (by business date, then id).
-- Partial payments are fine; more than the account owes, or than an invoice's open amount, is
-- refused (overpayment): nothing is kept as an unapplied credit. The payment is a payment
-- posting on the account's folio, so it needs the caller's open shift like any payment.
-- method: a payment method (cash, card, deposit, bank_transfer) or a payment code (BANK).
CREATE FUNCTION api_ar_pay(ctx jsonb, p jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    prop properties;
    a ar_accounts;
    c trx_codes;
    v_code text;
    v_method text;
    v_amount bigint;
    v_ref text;
    v_alloc jsonb;
    balance bigint;
    plan jsonb := '[]';
    item jsonb;
    path text;
    i integer := 0;
    inv ar_invoices;
    v_inv bigint;
    v_part bigint;
    rest bigint;
    total bigint := 0;
    res jsonb;
    post postings;
    y ar_payments;
BEGIN
    p := fl_params(p);
    PERFORM fl_check_keys(p, ARRAY['property', 'account', 'amount', 'method', 'reference',
                                   'allocations'], '');
    prop := fl_property_scope(ctx, p);
    v_code := fl_p_code(p, 'account', '', true);
    v_amount := fl_p_amount(p, 'amount', '', true, 1);
    v_method := fl_p_text(p, 'method', '', true, 32);
    v_ref := fl_p_text(p, 'reference', '', false, 64);
    v_alloc := fl_p_array(p, 'allocations', '', false);
    c := fl_p_payment_code(prop.id,
                           jsonb_build_object(CASE WHEN v_method ~ '^[A-Z0-9][A-Z0-9_-]{0,15}$'
                                                   THEN 'code' ELSE 'method' END, v_method), '');
    a := fl_ar_account_find(ctx, prop.id, NULL, v_code, true);
    SELECT f.balance INTO balance FROM folios f WHERE f.id = a.folio_id;
    IF v_amount > balance THEN
        PERFORM fl_fail_data('overpayment',
                             format('account %s owes %s: a payment of %s is more than that',
                                    a.code, balance, v_amount),
                             jsonb_build_object('account', a.code, 'balance', balance,
                                                'amount', v_amount));
    END IF;
    IF v_alloc IS NOT NULL AND jsonb_array_length(v_alloc) > 0 THEN
        FOR item IN SELECT value FROM jsonb_array_elements(v_alloc) LOOP
            path := format('allocations[%s].', i);
            i := i + 1;
            item := fl_params(item, path);
            PERFORM fl_check_keys(item, ARRAY['invoice_id', 'amount'], path);
            v_inv := fl_p_id(item, 'invoice_id', path, true);
            v_part := fl_p_amount(item, 'amount', path, true, 1);
            IF plan @> jsonb_build_array(jsonb_build_object('invoice_id', v_inv)) THEN
                PERFORM fl_fail('invalid_params', format('%sinvoice_id: invoice %s is named twice',
                                                         path, v_inv));
            END IF;
            SELECT * INTO inv FROM ar_invoices WHERE id = v_inv FOR UPDATE;
            IF NOT FOUND OR inv.account_id <> a.id THEN
                PERFORM fl_fail('not_found', format('%sinvoice_id: account %s has no invoice %s',
                                                    path, a.code, v_inv));
            END IF;
            IF v_part > inv.open_amount THEN
                PERFORM fl_fail_data('overpayment',
                                     format('%samount: invoice %s has %s left to pay, not %s',
                                            path, inv.id, inv.open_amount, v_part),
                                     jsonb_build_object('invoice_id', inv.id,
                                                        'open_amount', inv.open_amount,
                                                        'amount', v_part));
            END IF;
            plan := plan || jsonb_build_object('invoice_id', v_inv, 'amount', v_part);
            total := total + v_part;
        END LOOP;
        IF total <> v_amount THEN
            PERFORM fl_fail('invalid_params', format('the allocations add up to %s, the amount is '
                                                     '%s', total, v_amount));
        END IF;
    ELSE
        rest := v_amount;
        FOR inv IN SELECT * FROM ar_invoices
                    WHERE account_id = a.id AND open_amount > 0
                    ORDER BY business_date, id FOR UPDATE LOOP
            EXIT WHEN rest = 0;
            v_part := least(rest, inv.open_amount);
            plan := plan || jsonb_build_object('invoice_id', inv.id, 'amount', v_part);
            rest := rest - v_part;
        END LOOP;
        IF rest <> 0 THEN
            -- the open invoices always add up to the account's balance (fl_ar_check)
            PERFORM fl_fail('conflict', format('account %s: its open invoices do not cover %s',
                                               a.code, v_amount));
        END IF;
    END IF;

    PERFORM fl_ar_posting_allow(true);
    res := fl_post_payment(ctx, a.folio_id, c.id, v_amount,
                           left('City ledger payment ' || a.code, 200), v_ref);
    PERFORM fl_ar_posting_allow(false);
    SELECT * INTO post FROM postings WHERE id = (res -> 'posting' ->> 'id')::bigint;
    INSERT INTO ar_payments (property_id, account_id, posting_id, shift_id, trx_code_id, method,
                             amount, business_date, reference, created_by, user_id)
    VALUES (a.property_id, a.id, post.id, post.shift_id, c.id, c.payment_method, v_amount,
            post.business_date, v_ref, fl_actor(ctx), fl_ctx_user_id(ctx))
    RETURNING * INTO y;
    INSERT INTO ar_allocations (property_id, payment_id, invoice_id, amount)
    SELECT a.property_id, y.id, (e ->> 'invoice_id')::bigint, (e ->> 'amount')::bigint
      FROM jsonb_array_elements(plan) AS e;
    PERFORM fl_log(ctx, a.property_id, 'ar_payment', y.id, 'create', jsonb_build_object(
        'account', a.code, 'amount', v_amount, 'method', c.payment_method, 'code', c.code,
        'posting_id', post.id, 'shift_id', post.shift_id, 'allocations', plan,
        'reference', v_ref));
    RETURN jsonb_build_object(
        'payment', fl_ar_payment_json(y), 'account', fl_ar_account_json(a),
        'invoices', (SELECT coalesce(jsonb_agg(fl_ar_invoice_json(x) ORDER BY x.business_date,
                                               x.id), '[]'::jsonb)
                       FROM ar_invoices x
                      WHERE x.id IN (SELECT (e ->> 'invoice_id')::bigint
                                       FROM jsonb_array_elements(plan) AS e)));
END
$$;

-- ---------------------------------------------------------------------------------------------
-- Aging and checks
-- ---------------------------------------------------------------------------------------------

-- The aging of a property's city ledger as of a date: per account (v_account_id NULL: every
-- account that owes something on that date), what was still open on that date (invoices dated
-- on or before it, less the payments dated on or before it) in buckets by the invoice's age in
-- days (as_of - its business date): 0-30, 31-60, 61-90, over 90.
CREATE FUNCTION fl_ar_aging(v_property_id bigint, v_account_id bigint, v_as_of date)
RETURNS TABLE (account_id bigint, code text, name text, kind text, invoices bigint,
               days_0_30 bigint, days_31_60 bigint, days_61_90 bigint, days_over_90 bigint,
               total bigint)
LANGUAGE sql STABLE AS $$
    WITH o AS (
        SELECT i.account_id, v_as_of - i.business_date AS age,
               i.amount - coalesce((SELECT sum(l.amount) FROM ar_allocations l
                                      JOIN ar_payments y ON y.id = l.payment_id
                                     WHERE l.invoice_id = i.id AND y.business_date <= v_as_of),
                                   0) AS open
          FROM ar_invoices i
         WHERE i.property_id = v_property_id AND i.business_date <= v_as_of
           AND (v_account_id IS NULL OR i.account_id = v_account_id)
    ), s AS (
        SELECT o.account_id, count(*) FILTER (WHERE o.open > 0) AS n,
               coalesce(sum(o.open) FILTER (WHERE o.age <= 30), 0)::bigint AS b1,
               coalesce(sum(o.open) FILTER (WHERE o.age BETWEEN 31 AND 60), 0)::bigint AS b2,
               coalesce(sum(o.open) FILTER (WHERE o.age BETWEEN 61 AND 90), 0)::bigint AS b3,
               coalesce(sum(o.open) FILTER (WHERE o.age > 90), 0)::bigint AS b4
          FROM o GROUP BY o.account_id
    )
    SELECT a.id, a.code, a.name, a.kind, coalesce(s.n, 0), coalesce(s.b1, 0), coalesce(s.b2, 0),
           coalesce(s.b3, 0), coalesce(s.b4, 0),
           coalesce(s.b1 + s.b2 + s.b3 + s.b4, 0)
      FROM ar_accounts a LEFT JOIN s ON s.account_id = a.id
     WHERE a.property_id = v_property_id
       AND (a.id = v_account_id
            OR (v_account_id IS NULL AND coalesce(s.b1 + s.b2 + s.b3 + s.b4, 0) <> 0))
     ORDER BY a.code
$$;

CREATE FUNCTION api_ar_aging(ctx jsonb, p jsonb) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
    prop properties;
    a ar_accounts;
    v_code text;
    v_as_of date;
    items jsonb;
BEGIN
    p := fl_params(p);
    PERFORM fl_check_keys(p, ARRAY['property', 'account', 'date'], '');
    prop := fl_property_scope(ctx, p);
    v_code := fl_p_code(p, 'account', '', false);
    v_as_of := coalesce(fl_p_date(p, 'date', '', false), prop.business_date);
    IF v_code IS NOT NULL THEN
        a := fl_ar_account_find(ctx, prop.id, NULL, v_code, false);
    END IF;
    SELECT coalesce(jsonb_agg(jsonb_build_object(
               'account', x.code, 'account_id', x.account_id, 'name', x.name, 'kind', x.kind,
               'invoices', x.invoices, 'days_0_30', x.days_0_30, 'days_31_60', x.days_31_60,
               'days_61_90', x.days_61_90, 'days_over_90', x.days_over_90, 'total', x.total)
               ORDER BY x.code), '[]'::jsonb)
      INTO items
      FROM fl_ar_aging(prop.id, a.id, v_as_of) AS x;
    RETURN jsonb_build_object(
        'property', prop.code, 'as_of', v_as_of, 'business_date', prop.business_date,
        'items', items,
        'totals', jsonb_build_object(
            'invoices', (SELECT coalesce(sum((e ->> 'invoices')::bigint), 0) FROM jsonb_array_elements(items) e),
            'days_0_30', (SELECT coalesce(sum((e ->> 'days_0_30')::bigint), 0) FROM jsonb_array_elements(items) e),
            'days_31_60', (SELECT coalesce(sum((e ->> 'days_31_60')::bigint), 0) FROM jsonb_array_elements(items) e),
            'days_61_90', (SELECT coalesce(sum((e ->> 'days_61_90')::bigint), 0) FROM jsonb_array_elements(items) e),
            'days_over_90', (SELECT coalesce(sum((e ->> 'days_over_90')::bigint), 0) FROM jsonb_array_elements(items) e),
            'total', (SELECT coalesce(sum((e ->> 'total')::bigint), 0) FROM jsonb_array_elements(items) e)));
END
$$;

-- Every account of a property (NULL: of every property) whose open invoices do not add up to
-- its folio's balance. Empty when the city ledger is sound.
CREATE FUNCTION fl_ar_check(v_property_id bigint)
RETURNS TABLE (account_id bigint, code text, balance bigint, open_invoices bigint)
LANGUAGE sql STABLE AS $$
    SELECT a.id, a.code, f.balance,
           coalesce((SELECT sum(i.open_amount) FROM ar_invoices i WHERE i.account_id = a.id),
                    0)::bigint
      FROM ar_accounts a JOIN folios f ON f.id = a.folio_id
     WHERE (v_property_id IS NULL OR a.property_id = v_property_id)
       AND f.balance <> coalesce((SELECT sum(i.open_amount) FROM ar_invoices i
                                   WHERE i.account_id = a.id), 0)
$$;
