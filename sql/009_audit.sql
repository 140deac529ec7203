-- 009_audit.sql - the night audit (SPEC section 5, docs/audit.md): runs, steps, the room and
-- tax posting of every in-house stay once per night, the trial balance, the stored reports.
--
-- A run closes one business date of one property and moves through seven steps, each step (each
-- chunk of the posting step, each report) one transaction that also records its progress:
--   precheck  due-outs, no-shows, open cashier shifts, folios over their credit limit; the
--             property's settings.audit_block names the findings that stop the audit
--   roll      the open business date moves to the next day first, in a short transaction
--             (the property row FOR UPDATE, as fl_close_business_date), so that every posting
--             from now on goes to the next date
--   plan      audit_stays: the stays in house at the end of the closing date, with their rate
--   post      room and tax of the planned stays, dated with the closing date, source
--             night_audit, settings.audit_chunk stays per transaction; audit_room_posts has
--             one row per stay and night, so a second posting is impossible
--   verify    every folio balance equals the sum of its postings; the trial balance of the
--             guest, house, city and deposit ledgers holds to the cent (opening from the
--             previous day's stored report)
--   reports   one stored report per kind and transaction (audit_reports, append-only)
--   finish    the date is recorded as closed (business_dates, as fl_close_business_date
--             does, but after the audit's own postings) and the run is done
-- The daemon drives a run by calling fl_audit_step(run_id, owner) until it answers something
-- other than "running"; any daemon may resume a run whose owner's lease (30 s) has expired, or
-- its own after a restart. pg_try_advisory_xact_lock(class, property) inside every step keeps
-- two steps of one property from ever running at once.
--
-- Changes to earlier migrations (CREATE OR REPLACE / new triggers, narrow on purpose):
--   fl_postings_guard    accepts source night_audit on the closing date of the property's
--                        running audit while it is in its post step (the date is closed then)
--   postings_balance     one statement-level trigger (fl_postings_balance_stmt) instead of a
--                        row trigger: the same balances, one UPDATE per folio and statement
--   stays_audit_arrival  a check-in that read a business date closed meanwhile is refused
--   stays_audit_checkout a checkout is refused (audit_in_progress, retryable) while the audit
--                        still has to post that stay's last night
-- For the POS (docs/pos.md, NA night_audit): fl_audit_running(property_id) and
-- fl_audit_blocks_pos(outlet_id).
--
-- Applied once by the migrate command inside one transaction; never edited once landed.

-- ---------------------------------------------------------------------------------------------
-- Constants and settings
-- ---------------------------------------------------------------------------------------------

-- The first key of the two-key advisory locks of the audit ('FLAU'); the second is the property.
CREATE FUNCTION fl_audit_lock_class() RETURNS integer
LANGUAGE sql IMMUTABLE AS $$ SELECT 1179402581 $$;

-- A daemon that stopped stepping its run for this long has lost it: another may take it over.
CREATE FUNCTION fl_audit_lease() RETURNS interval
LANGUAGE sql IMMUTABLE AS $$ SELECT interval '30 seconds' $$;

CREATE FUNCTION fl_audit_step_names() RETURNS text[]
LANGUAGE sql IMMUTABLE AS $$
    SELECT ARRAY['precheck', 'roll', 'plan', 'post', 'verify', 'reports', 'finish']
$$;

-- The stored reports, in the order the reports step writes them.
CREATE FUNCTION fl_audit_report_kinds() RETURNS text[]
LANGUAGE sql IMMUTABLE AS $$
    SELECT ARRAY['precheck', 'trial_balance', 'revenue', 'payments', 'guest_ledger',
                 'city_ledger', 'deposits', 'cashier', 'room_stats', 'no_shows', 'high_balance']
$$;

CREATE FUNCTION fl_audit_check_names() RETURNS text[]
LANGUAGE sql IMMUTABLE AS $$
    SELECT ARRAY['due_outs', 'no_shows', 'open_shifts', 'over_limit']
$$;

-- An integer setting of the property (settings.<key>), v_default when absent or null;
-- invalid_settings when it is not an integer within lo..hi.
CREATE FUNCTION fl_audit_setting_int(v_settings jsonb, v_key text, v_default bigint, lo bigint,
                                     hi bigint) RETURNS bigint
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    v jsonb := v_settings -> v_key;
BEGIN
    IF v IS NULL OR jsonb_typeof(v) = 'null' THEN
        RETURN v_default;
    END IF;
    IF jsonb_typeof(v) <> 'number' OR v::text !~ '^-?[0-9]{1,15}$'
       OR v::text::bigint NOT BETWEEN lo AND hi THEN
        PERFORM fl_fail('invalid_settings', format('settings.%s must be an integer between %s '
                                                   'and %s', v_key, lo, hi));
    END IF;
    RETURN v::text::bigint;
END
$$;

-- settings.audit_block: the pre-check findings that stop the audit (default: none).
CREATE FUNCTION fl_audit_block_list(v_settings jsonb) RETURNS text[]
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    v jsonb := v_settings -> 'audit_block';
    res text[] := '{}';
    e jsonb;
BEGIN
    IF v IS NULL OR jsonb_typeof(v) = 'null' THEN
        RETURN res;
    END IF;
    IF jsonb_typeof(v) <> 'array' THEN
        PERFORM fl_fail('invalid_settings', 'settings.audit_block must be an array of: '
                        || array_to_string(fl_audit_check_names(), ', '));
    END IF;
    FOR e IN SELECT value FROM jsonb_array_elements(v) LOOP
        IF jsonb_typeof(e) <> 'string' OR NOT ((e #>> '{}') = ANY (fl_audit_check_names())) THEN
            PERFORM fl_fail('invalid_settings', format('settings.audit_block: %s is not one of: %s',
                                                       e::text,
                                                       array_to_string(fl_audit_check_names(),
                                                                       ', ')));
        END IF;
        res := res || (e #>> '{}');
    END LOOP;
    RETURN res;
END
$$;

CREATE FUNCTION fl_audit_scheduled(v_settings jsonb) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce(v_settings -> 'audit_schedule' = 'true'::jsonb, false)
$$;

-- When the audit of the property's open business date is due: at audit_time local time, on the
-- business date itself for an evening audit (12:00 or later), else on the next day (the usual
-- 03:00 audit of the night before).
CREATE FUNCTION fl_audit_due_at(pr properties) RETURNS timestamptz
LANGUAGE sql STABLE AS $$
    SELECT ((pr.business_date + CASE WHEN pr.audit_time >= time '12:00' THEN 0 ELSE 1 END)
            + pr.audit_time) AT TIME ZONE pr.timezone
$$;

-- ---------------------------------------------------------------------------------------------
-- Tables
-- ---------------------------------------------------------------------------------------------

-- One audit of one business date (business_date: the date it closes). At most one run of a
-- property is unfinished (running, blocked or failed). cancelled: the date was closed by
-- business_date.close before the audit rolled it; nothing was posted. owner is the daemon
-- instance driving it; lease_at its last step.
CREATE TABLE audit_runs (
    id            bigserial PRIMARY KEY,
    property_id   bigint NOT NULL REFERENCES properties (id),
    business_date date NOT NULL,
    status        text NOT NULL DEFAULT 'running'
                  CHECK (status IN ('running', 'blocked', 'failed', 'done', 'cancelled')),
    step          text NOT NULL DEFAULT 'precheck'
                  CHECK (step IN ('precheck', 'roll', 'plan', 'post', 'verify', 'reports',
                                  'finish')),
    owner         text NOT NULL CHECK (btrim(owner) <> '' AND length(owner) <= 200),
    lease_at      timestamptz NOT NULL DEFAULT now(),
    started_at    timestamptz NOT NULL DEFAULT now(),
    started_by    text NOT NULL,
    trigger       text NOT NULL CHECK (trigger IN ('request', 'schedule')),
    claims        integer NOT NULL DEFAULT 1,
    finished_at   timestamptz,
    error         jsonb,
    blockers      jsonb,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (property_id, business_date),
    UNIQUE (property_id, id),
    CHECK ((status IN ('done', 'cancelled')) = (finished_at IS NOT NULL))
);

CREATE UNIQUE INDEX audit_runs_one_open ON audit_runs (property_id)
    WHERE status IN ('running', 'blocked', 'failed');

-- The steps of a run with their progress (done of total: stays posted, reports stored).
CREATE TABLE audit_steps (
    run_id     bigint NOT NULL REFERENCES audit_runs (id),
    seq        integer NOT NULL,
    step       text NOT NULL,
    status     text NOT NULL DEFAULT 'pending'
               CHECK (status IN ('pending', 'running', 'done', 'failed')),
    done       bigint NOT NULL DEFAULT 0,
    total      bigint,
    started_at timestamptz,
    done_at    timestamptz,
    detail     jsonb NOT NULL DEFAULT '{}',
    PRIMARY KEY (run_id, step),
    UNIQUE (run_id, seq)
);

-- The plan of the post step: the stays in house at the end of the closing date, with the rate,
-- rate code and guests they have when the plan is made, right after the roll (a later
-- stay.update does not change the closed night). No foreign keys: the rows are copied from
-- stays and folios in one statement, and checking 4 keys per row would make the plan of a
-- 100,000-room hotel take seconds.
CREATE TABLE audit_stays (
    run_id       bigint NOT NULL,
    seq          integer NOT NULL,
    stay_id      bigint NOT NULL,
    folio_id     bigint NOT NULL,
    room_id      bigint NOT NULL,
    rate         bigint NOT NULL,
    rate_code_id bigint NOT NULL,
    adults       integer NOT NULL,
    children     integer NOT NULL,
    PRIMARY KEY (run_id, seq),
    UNIQUE (run_id, stay_id)
);

CREATE INDEX audit_stays_stay ON audit_stays (stay_id);

-- Room and tax of one stay for one night: the key that makes a second posting impossible. It
-- is written in the transaction that posts them.
CREATE TABLE audit_room_posts (
    stay_id         bigint NOT NULL REFERENCES stays (id),
    business_date   date NOT NULL,
    property_id     bigint NOT NULL REFERENCES properties (id),
    run_id          bigint NOT NULL REFERENCES audit_runs (id),
    room_posting_id bigint NOT NULL REFERENCES postings (id),
    tax_posting_id  bigint REFERENCES postings (id),
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (stay_id, business_date)
);

CREATE INDEX audit_room_posts_run ON audit_room_posts (run_id);

-- The reports of a closed date, computed once by the audit. A stored report never changes.
CREATE TABLE audit_reports (
    id            bigserial PRIMARY KEY,
    property_id   bigint NOT NULL REFERENCES properties (id),
    business_date date NOT NULL,
    kind          text NOT NULL,
    run_id        bigint NOT NULL REFERENCES audit_runs (id),
    content       jsonb NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (property_id, business_date, kind),
    CHECK (kind = ANY (fl_audit_report_kinds()))
);

CREATE TRIGGER audit_reports_append_only BEFORE UPDATE OR DELETE ON audit_reports
    FOR EACH ROW EXECUTE FUNCTION fl_refuse_change();
CREATE TRIGGER audit_reports_no_truncate BEFORE TRUNCATE ON audit_reports
    FOR EACH STATEMENT EXECUTE FUNCTION fl_refuse_change();
CREATE TRIGGER audit_room_posts_append_only BEFORE UPDATE OR DELETE ON audit_room_posts
    FOR EACH ROW EXECUTE FUNCTION fl_refuse_change();
CREATE TRIGGER audit_room_posts_no_truncate BEFORE TRUNCATE ON audit_room_posts
    FOR EACH STATEMENT EXECUTE FUNCTION fl_refuse_change();
CREATE TRIGGER audit_stays_append_only BEFORE UPDATE OR DELETE ON audit_stays
    FOR EACH ROW EXECUTE FUNCTION fl_refuse_change();
CREATE TRIGGER audit_runs_no_delete BEFORE DELETE ON audit_runs
    FOR EACH ROW EXECUTE FUNCTION fl_refuse_change();
CREATE TRIGGER audit_runs_no_truncate BEFORE TRUNCATE ON audit_runs
    FOR EACH STATEMENT EXECUTE FUNCTION fl_refuse_change();
CREATE TRIGGER audit_steps_no_delete BEFORE DELETE ON audit_steps
    FOR EACH ROW EXECUTE FUNCTION fl_refuse_change();

-- ---------------------------------------------------------------------------------------------
-- The posting guard (004) with one exception, and the stays triggers
-- ---------------------------------------------------------------------------------------------

-- As in 004, plus: a posting of source night_audit may carry the closing date of the
-- property's running audit while that audit is in its post step. Nothing else ever lands on a
-- closed date.
CREATE OR REPLACE FUNCTION fl_postings_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    open_date date;
    f_status text;
    parent_folio bigint;
BEGIN
    SELECT business_date INTO open_date FROM properties WHERE id = NEW.property_id FOR SHARE;
    IF (NEW.business_date IS DISTINCT FROM open_date
        OR EXISTS (SELECT 1 FROM business_dates b
                    WHERE b.property_id = NEW.property_id AND b.business_date = NEW.business_date))
       AND NOT (NEW.source = 'night_audit'
                AND EXISTS (SELECT 1 FROM audit_runs r
                             WHERE r.property_id = NEW.property_id AND r.status = 'running'
                               AND r.step = 'post' AND r.business_date = NEW.business_date))
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

-- The balance of a folio moves by one statement-level trigger instead of one UPDATE per posting
-- row (004's postings_balance): the same sum in the same statement, under the folio lock the
-- guard already took, but a multi-row INSERT (the audit's room and tax postings) updates each
-- folio once. A single-row insert behaves exactly as before. The folio guard still sees the
-- change at trigger depth 2.
CREATE FUNCTION fl_postings_balance_stmt() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE folios f SET balance = f.balance + n.s
      FROM (SELECT folio_id, sum(amount)::bigint AS s FROM new_postings GROUP BY folio_id) n
     WHERE f.id = n.folio_id AND n.s <> 0;
    RETURN NULL;
END
$$;

DROP TRIGGER postings_balance ON postings;
CREATE TRIGGER postings_balance AFTER INSERT ON postings REFERENCING NEW TABLE AS new_postings
    FOR EACH STATEMENT EXECUTE FUNCTION fl_postings_balance_stmt();

-- A check-in that read the business date just before the audit rolled it would otherwise
-- arrive on a closed date and miss the audit's plan: it takes the property row FOR SHARE (the
-- roll takes it FOR UPDATE) and is refused when its arrival date is closed.
CREATE FUNCTION fl_audit_stays_arrival() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    open_date date;
BEGIN
    SELECT business_date INTO open_date FROM properties WHERE id = NEW.property_id FOR SHARE;
    IF NEW.arrival < open_date THEN
        PERFORM fl_fail_data('business_date_closed',
                             format('business date %s was closed meanwhile: check in again on %s',
                                    NEW.arrival, open_date),
                             '{"retryable": true}');
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER stays_audit_arrival BEFORE INSERT ON stays
    FOR EACH ROW EXECUTE FUNCTION fl_audit_stays_arrival();

-- Between the roll and the posting of a stay's last night, a checkout would leave that night
-- unpaid, so it waits (a retryable refusal). The post step locks the stays of a chunk first,
-- so a checkout that comes after sees the charge.
CREATE FUNCTION fl_audit_stays_checkout() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    r audit_runs;
BEGIN
    SELECT * INTO r FROM audit_runs ru
     WHERE ru.property_id = NEW.property_id AND ru.status IN ('running', 'blocked', 'failed')
       AND ru.step IN ('plan', 'post') AND NEW.arrival <= ru.business_date
       AND NOT EXISTS (SELECT 1 FROM audit_room_posts x
                        WHERE x.stay_id = NEW.id AND x.business_date = ru.business_date);
    IF FOUND THEN
        PERFORM fl_fail_data('audit_in_progress',
                             format('the night audit has still to post room and tax of %s for the '
                                    'night of %s: check out again in a moment', NEW.number,
                                    r.business_date),
                             jsonb_build_object('retryable', true, 'business_date',
                                                r.business_date));
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER stays_audit_checkout BEFORE UPDATE OF status ON stays
    FOR EACH ROW WHEN (OLD.status = 'in_house' AND NEW.status = 'checked_out')
    EXECUTE FUNCTION fl_audit_stays_checkout();

-- ---------------------------------------------------------------------------------------------
-- For the POS and the daemon
-- ---------------------------------------------------------------------------------------------

-- True while an audit of the property is running (from its start to its end, pre-checks
-- included; a blocked or failed audit is not running).
CREATE FUNCTION fl_audit_running(v_property_id bigint) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT EXISTS (SELECT 1 FROM audit_runs
                    WHERE property_id = v_property_id AND status = 'running')
$$;

-- True when a POS posting of this outlet must be answered NA night_audit: an audit of its
-- property is running and the outlet's policy block_during_audit, or the property's
-- settings.audit_block_postings, says so.
CREATE FUNCTION fl_audit_blocks_pos(v_outlet_id bigint) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT fl_audit_running(o.property_id)
           AND (coalesce(o.policy -> 'block_during_audit' = 'true'::jsonb, false)
                OR coalesce(pr.settings -> 'audit_block_postings' = 'true'::jsonb, false))
      FROM outlets o JOIN properties pr ON pr.id = o.property_id
     WHERE o.id = v_outlet_id
$$;

-- ---------------------------------------------------------------------------------------------
-- JSON
-- ---------------------------------------------------------------------------------------------

CREATE FUNCTION fl_audit_run_json(r audit_runs) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', r.id, 'property', fl_property_code(r.property_id), 'property_id', r.property_id,
        'business_date', r.business_date, 'status', r.status, 'step', r.step,
        'owner', r.owner, 'lease_at', r.lease_at, 'started_at', r.started_at,
        'started_by', r.started_by, 'trigger', r.trigger, 'claims', r.claims,
        'finished_at', r.finished_at, 'error', r.error, 'blockers', r.blockers,
        'progress', (SELECT jsonb_build_object('step', s.step, 'done', s.done, 'total', s.total)
                       FROM audit_steps s WHERE s.run_id = r.id AND s.step = r.step),
        'steps', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                             'step', s.step, 'status', s.status, 'done', s.done,
                             'total', s.total, 'started_at', s.started_at,
                             'done_at', s.done_at) ORDER BY s.seq), '[]'::jsonb)
                    FROM audit_steps s WHERE s.run_id = r.id))
$$;

-- The audit state of a property: its open date, schedule, last closed date and latest run.
CREATE FUNCTION fl_audit_status_json(v_property_id bigint) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'property', pr.code, 'property_id', pr.id, 'business_date', pr.business_date,
        'timezone', pr.timezone, 'audit_time', to_char(pr.audit_time, 'HH24:MI'),
        'schedule', fl_audit_scheduled(pr.settings), 'next_audit_at', fl_audit_due_at(pr),
        'last_closed', (SELECT max(b.business_date) FROM business_dates b
                         WHERE b.property_id = pr.id),
        'running', fl_audit_running(pr.id),
        'run', (SELECT fl_audit_run_json(r) FROM audit_runs r WHERE r.property_id = pr.id
                 ORDER BY r.business_date DESC LIMIT 1))
      FROM properties pr WHERE pr.id = v_property_id
$$;

-- ---------------------------------------------------------------------------------------------
-- Balances as of the end of a business date
-- ---------------------------------------------------------------------------------------------

-- The ledger a folio belongs to: guest (stays' windows and group masters), city (city-ledger
-- accounts), house (every other account: non-guest, employee, control, semi-permanent,
-- permanent).
CREATE FUNCTION fl_audit_ledger(v_type text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN v_type IN ('individual', 'master') THEN 'guest'
                WHEN v_type = 'city_ledger' THEN 'city'
                ELSE 'house' END
$$;

-- Every folio of a property with its balance at the end of v_date: the stored balance less the
-- postings dated after v_date (the audit rolls the date first, so those may exist already).
CREATE FUNCTION fl_audit_folio_balances(v_property_id bigint, v_date date)
RETURNS TABLE (folio_id bigint, type text, ledger text, stay_id bigint, group_id bigint,
               balance bigint)
LANGUAGE sql STABLE AS $$
    SELECT f.id, f.type, fl_audit_ledger(f.type), f.stay_id, f.group_id,
           f.balance - coalesce(l.s, 0)::bigint
      FROM folios f
      LEFT JOIN (SELECT p.folio_id AS fid, sum(p.amount) AS s FROM postings p
                  WHERE p.property_id = v_property_id AND p.business_date > v_date
                  GROUP BY p.folio_id) l ON l.fid = f.id
     WHERE f.property_id = v_property_id
$$;

-- The stays in house at the end of v_date: arrived by then and not checked out on or before it.
CREATE FUNCTION fl_audit_in_house(v_property_id bigint, v_date date) RETURNS SETOF stays
LANGUAGE sql STABLE AS $$
    SELECT s.* FROM stays s
     WHERE s.property_id = v_property_id AND s.arrival <= v_date
       AND (s.checkout_date IS NULL OR s.checkout_date > v_date)
$$;

-- Deposits held per stay through v_date: deposit-method payment lines (and their voids,
-- adjustments and transfers) on the stay's windows, as a positive amount held.
CREATE FUNCTION fl_audit_deposits_held(v_property_id bigint, v_date date)
RETURNS TABLE (stay_id bigint, held bigint)
LANGUAGE sql STABLE AS $$
    SELECT f.stay_id, (-sum(p.amount))::bigint
      FROM postings p
      JOIN trx_codes c ON c.id = p.trx_code_id
      JOIN folios f ON f.id = p.folio_id
     WHERE p.property_id = v_property_id AND p.business_date <= v_date
       AND c.kind = 'payment' AND c.payment_method = 'deposit' AND f.stay_id IS NOT NULL
     GROUP BY f.stay_id
$$;

-- ---------------------------------------------------------------------------------------------
-- Pre-checks
-- ---------------------------------------------------------------------------------------------

-- The findings of the pre-checks for closing v_date. No-shows: reservations are not modelled
-- (a stay exists from its check-in), so that list is always empty.
CREATE FUNCTION fl_audit_precheck(pr properties, v_date date) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
    res jsonb;
    blocks text[] := fl_audit_block_list(pr.settings);
BEGIN
    res := jsonb_build_object(
        'due_outs', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                                'stay_id', s.id, 'number', s.number, 'room', rm.number,
                                'guest', g.first_name || ' ' || g.last_name,
                                'departure', s.departure,
                                'balance', (SELECT coalesce(sum(f.balance), 0) FROM folios f
                                             WHERE f.stay_id = s.id))
                                ORDER BY length(rm.number), rm.number, s.id), '[]'::jsonb)
                       FROM stays s JOIN rooms rm ON rm.id = s.room_id
                       JOIN guests g ON g.id = s.guest_id
                      WHERE s.property_id = pr.id AND s.status = 'in_house'
                        AND s.departure <= v_date),
        'no_shows', '[]'::jsonb,
        'open_shifts', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                                   'shift_id', sh.id, 'user', sh.username,
                                   'opened_at', sh.opened_at,
                                   'opened_business_date', sh.opened_business_date)
                                   ORDER BY sh.id), '[]'::jsonb)
                          FROM cashier_shifts sh
                         WHERE sh.property_id = pr.id AND sh.status = 'open'),
        'over_limit', (SELECT coalesce(jsonb_agg(x.j ORDER BY x.k), '[]'::jsonb) FROM (
                          SELECT 1 AS o, s.id AS k, jsonb_build_object(
                                     'kind', 'stay', 'stay_id', s.id, 'number', s.number,
                                     'room', rm.number,
                                     'guest', g.first_name || ' ' || g.last_name,
                                     'balance', b.bal, 'credit_limit', s.credit_limit,
                                     'over_by', b.bal - s.credit_limit) AS j
                            FROM stays s JOIN rooms rm ON rm.id = s.room_id
                            JOIN guests g ON g.id = s.guest_id
                            CROSS JOIN LATERAL (SELECT coalesce(sum(f.balance), 0)::bigint AS bal
                                                  FROM folios f WHERE f.stay_id = s.id) b
                           WHERE s.property_id = pr.id AND s.status = 'in_house'
                             AND s.credit_limit IS NOT NULL AND b.bal > s.credit_limit
                          UNION ALL
                          SELECT 2, gr.id, jsonb_build_object(
                                     'kind', 'group', 'group_id', gr.id, 'group', gr.code,
                                     'folio_id', f.id, 'number', f.number,
                                     'balance', f.balance, 'credit_limit', gr.credit_limit,
                                     'over_by', f.balance - gr.credit_limit)
                            FROM groups gr JOIN folios f ON f.id = gr.master_folio_id
                           WHERE gr.property_id = pr.id AND gr.status = 'open'
                             AND gr.credit_limit IS NOT NULL AND f.balance > gr.credit_limit
                       ) x));
    RETURN res || jsonb_build_object(
        'block', to_jsonb(blocks),
        'blocking', (SELECT coalesce(jsonb_agg(k ORDER BY k), '[]'::jsonb)
                       FROM unnest(blocks) AS k WHERE jsonb_array_length(res -> k) > 0));
END
$$;

-- ---------------------------------------------------------------------------------------------
-- Reports (each as of the end of v_date; v_run: the audit run, NULL for a live report)
-- ---------------------------------------------------------------------------------------------

-- Trial balance: for each ledger, opening + charges - credits + transfers in + transfers out
-- (a negative number) = closing, where opening is the closing of the stored trial balance of
-- the previous date (else computed from the postings before v_date) and closing is the sum of
-- the folios' balances at the end of v_date. Charges are every line on a non-payment code
-- (charges, taxes, service, paid-outs and their voids and adjustments), credits every line on
-- a payment code (payments less refunds, voids and adjustments of payments), transfers the
-- transfer lines (within a ledger they cancel out). The deposit ledger: deposits held for the
-- stays in house; opening + received - applied (held by the stays that checked out) = closing.
-- Also: every folio's stored balance against the sum of its postings, and every city-ledger
-- account's open invoices against its balance. ok is true when everything holds.
CREATE FUNCTION fl_audit_trial_balance(v_property_id bigint, v_date date) RETURNS jsonb
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
BEGIN
    SELECT content INTO prev FROM audit_reports
     WHERE property_id = v_property_id AND business_date = v_date - 1 AND kind = 'trial_balance';
    FOR lg IN SELECT unnest(ARRAY['guest', 'house', 'city']) LOOP
        SELECT coalesce(sum(p.amount) FILTER (WHERE c.kind <> 'payment'
                            AND p.type NOT IN ('transfer_in', 'transfer_out')), 0)::bigint AS charges,
               (-coalesce(sum(p.amount) FILTER (WHERE c.kind = 'payment'
                            AND p.type NOT IN ('transfer_in', 'transfer_out')), 0))::bigint AS credits,
               coalesce(sum(p.amount) FILTER (WHERE p.type = 'transfer_in'), 0)::bigint AS t_in,
               coalesce(sum(p.amount) FILTER (WHERE p.type = 'transfer_out'), 0)::bigint AS t_out,
               count(*) AS lines
          INTO m
          FROM postings p
          JOIN folios f ON f.id = p.folio_id
          JOIN trx_codes c ON c.id = p.trx_code_id
         WHERE p.property_id = v_property_id AND p.business_date = v_date
           AND fl_audit_ledger(f.type) = lg;
        SELECT coalesce(sum(b.balance), 0)::bigint INTO closing
          FROM fl_audit_folio_balances(v_property_id, v_date) b WHERE b.ledger = lg;
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

-- Daily revenue by department and transaction code: every line dated v_date on a non-payment
-- code that is not a transfer (transfers move revenue between folios, they are not revenue).
CREATE FUNCTION fl_audit_report_revenue(v_property_id bigint, v_date date) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    WITH l AS (
        SELECT c.department, c.code, c.description, c.kind,
               coalesce(sum(p.amount) FILTER (WHERE p.type IN ('charge', 'tax', 'service')), 0)
                   ::bigint AS posted,
               coalesce(sum(p.amount) FILTER (WHERE p.type = 'void'), 0)::bigint AS voids,
               coalesce(sum(p.amount) FILTER (WHERE p.type = 'adjustment'), 0)::bigint
                   AS adjustments,
               sum(p.amount)::bigint AS net, count(*) AS lines
          FROM postings p JOIN trx_codes c ON c.id = p.trx_code_id
         WHERE p.property_id = v_property_id AND p.business_date = v_date
           AND c.kind <> 'payment' AND p.type NOT IN ('transfer_in', 'transfer_out')
         GROUP BY c.department, c.code, c.description, c.kind
    )
    SELECT jsonb_build_object(
        'codes', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                             'department', l.department, 'code', l.code,
                             'description', l.description, 'kind', l.kind,
                             'posted', l.posted, 'voids', l.voids,
                             'adjustments', l.adjustments, 'net', l.net, 'lines', l.lines)
                             ORDER BY l.department, l.code), '[]'::jsonb) FROM l),
        'departments', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                                   'department', d.department, 'net', d.net, 'lines', d.lines)
                                   ORDER BY d.department), '[]'::jsonb)
                          FROM (SELECT l.department, sum(l.net)::bigint AS net,
                                       sum(l.lines)::bigint AS lines
                                  FROM l GROUP BY l.department) d),
        'totals', jsonb_build_object(
            'revenue', (SELECT coalesce(sum(l.net), 0)::bigint FROM l WHERE l.kind = 'charge'),
            'tax', (SELECT coalesce(sum(l.net), 0)::bigint FROM l WHERE l.kind = 'tax'),
            'service', (SELECT coalesce(sum(l.net), 0)::bigint FROM l WHERE l.kind = 'service'),
            'paid_out', (SELECT coalesce(sum(l.net), 0)::bigint FROM l WHERE l.kind = 'paid_out'),
            'total', (SELECT coalesce(sum(l.net), 0)::bigint FROM l)))
$$;

-- Payments by method and code: received (payments), refunded (refunds), corrections (voids and
-- adjustments of payment lines, as money received), net = the money taken in on v_date.
CREATE FUNCTION fl_audit_report_payments(v_property_id bigint, v_date date) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    WITH l AS (
        SELECT c.payment_method AS method, c.code,
               (-coalesce(sum(p.amount) FILTER (WHERE p.type = 'payment' AND p.amount < 0), 0))
                   ::bigint AS received,
               coalesce(sum(p.amount) FILTER (WHERE p.type = 'payment' AND p.amount > 0), 0)
                   ::bigint AS refunded,
               (-coalesce(sum(p.amount) FILTER (WHERE p.type IN ('void', 'adjustment')), 0))
                   ::bigint AS corrections,
               (-sum(p.amount))::bigint AS net, count(*) AS lines
          FROM postings p JOIN trx_codes c ON c.id = p.trx_code_id
         WHERE p.property_id = v_property_id AND p.business_date = v_date
           AND c.kind = 'payment' AND p.type NOT IN ('transfer_in', 'transfer_out')
         GROUP BY c.payment_method, c.code
    )
    SELECT jsonb_build_object(
        'codes', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                             'method', l.method, 'code', l.code, 'received', l.received,
                             'refunded', l.refunded, 'corrections', l.corrections,
                             'net', l.net, 'lines', l.lines) ORDER BY l.method, l.code),
                         '[]'::jsonb) FROM l),
        'methods', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                               'method', m.method, 'net', m.net, 'lines', m.lines)
                               ORDER BY m.method), '[]'::jsonb)
                      FROM (SELECT l.method, sum(l.net)::bigint AS net, sum(l.lines)::bigint AS lines
                              FROM l GROUP BY l.method) m),
        'totals', jsonb_build_object(
            'received', (SELECT coalesce(sum(l.received), 0)::bigint FROM l),
            'refunded', (SELECT coalesce(sum(l.refunded), 0)::bigint FROM l),
            'corrections', (SELECT coalesce(sum(l.corrections), 0)::bigint FROM l),
            'net', (SELECT coalesce(sum(l.net), 0)::bigint FROM l)))
$$;

-- The guest ledger at the end of v_date: the stays in house with their balance (all windows),
-- then every guest and house folio with a balance, and the totals.
CREATE FUNCTION fl_audit_report_guest_ledger(v_property_id bigint, v_date date) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    WITH b AS (SELECT * FROM fl_audit_folio_balances(v_property_id, v_date)),
    ih AS (
        SELECT s.id, s.number, rm.number AS room, g.first_name || ' ' || g.last_name AS guest,
               s.arrival, s.departure, s.adults, s.children, s.rate, s.credit_limit,
               gr.code AS grp, length(rm.number) AS rl,
               (SELECT coalesce(sum(b.balance), 0) FROM b WHERE b.stay_id = s.id)::bigint AS balance
          FROM fl_audit_in_house(v_property_id, v_date) s
          JOIN rooms rm ON rm.id = s.room_id JOIN guests g ON g.id = s.guest_id
          LEFT JOIN groups gr ON gr.id = s.group_id
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

-- The city ledger at the end of v_date with the aging of every account that owes something
-- (fl_ar_aging of 008), the invoices and payments of the day, and the totals.
CREATE FUNCTION fl_audit_report_city_ledger(v_property_id bigint, v_date date) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    WITH ag AS (SELECT * FROM fl_ar_aging(v_property_id, NULL, v_date)),
    bal AS (SELECT a.id, b.balance FROM ar_accounts a
              JOIN fl_audit_folio_balances(v_property_id, v_date) b ON b.folio_id = a.folio_id
             WHERE a.property_id = v_property_id)
    SELECT jsonb_build_object(
        'accounts', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                                'account', ag.code, 'name', ag.name, 'kind', ag.kind,
                                'credit_limit', a.credit_limit,
                                'balance', (SELECT bal.balance FROM bal WHERE bal.id = ag.account_id),
                                'invoices', ag.invoices, 'days_0_30', ag.days_0_30,
                                'days_31_60', ag.days_31_60, 'days_61_90', ag.days_61_90,
                                'days_over_90', ag.days_over_90, 'total', ag.total)
                                ORDER BY ag.code), '[]'::jsonb)
                       FROM ag JOIN ar_accounts a ON a.id = ag.account_id),
        'today', jsonb_build_object(
            'invoices', (SELECT count(*) FROM ar_invoices i
                          WHERE i.property_id = v_property_id AND i.business_date = v_date),
            'invoiced', (SELECT coalesce(sum(i.amount), 0)::bigint FROM ar_invoices i
                          WHERE i.property_id = v_property_id AND i.business_date = v_date),
            'payments', (SELECT count(*) FROM ar_payments y
                          WHERE y.property_id = v_property_id AND y.business_date = v_date),
            'paid', (SELECT coalesce(sum(y.amount), 0)::bigint FROM ar_payments y
                      WHERE y.property_id = v_property_id AND y.business_date = v_date)),
        'totals', jsonb_build_object(
            'balance', (SELECT coalesce(sum(bal.balance), 0)::bigint FROM bal),
            'days_0_30', (SELECT coalesce(sum(ag.days_0_30), 0)::bigint FROM ag),
            'days_31_60', (SELECT coalesce(sum(ag.days_31_60), 0)::bigint FROM ag),
            'days_61_90', (SELECT coalesce(sum(ag.days_61_90), 0)::bigint FROM ag),
            'days_over_90', (SELECT coalesce(sum(ag.days_over_90), 0)::bigint FROM ag),
            'total', (SELECT coalesce(sum(ag.total), 0)::bigint FROM ag)))
$$;

-- Deposits held for the stays in house at the end of v_date, and the day's movement.
CREATE FUNCTION fl_audit_report_deposits(v_property_id bigint, v_date date, v_tb jsonb)
RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'stays', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                             'stay_id', s.id, 'number', s.number, 'room', rm.number,
                             'guest', g.first_name || ' ' || g.last_name, 'held', h.held)
                             ORDER BY length(rm.number), rm.number, s.id), '[]'::jsonb)
                    FROM fl_audit_in_house(v_property_id, v_date) s
                    JOIN fl_audit_deposits_held(v_property_id, v_date) h ON h.stay_id = s.id
                    JOIN rooms rm ON rm.id = s.room_id JOIN guests g ON g.id = s.guest_id
                   WHERE h.held <> 0),
        'totals', coalesce(v_tb -> 'ledgers' -> 'deposit',
                           fl_audit_trial_balance(v_property_id, v_date) -> 'ledgers'
                           -> 'deposit'))
$$;

-- Cashier shifts of v_date: every shift with money lines dated v_date, opened or closed on it;
-- its lines of the day by payment method, its paid-outs and voids of the day, and, for a shift
-- closed on v_date, the count at closing. status is the shift's state at the end of v_date.
CREATE FUNCTION fl_audit_report_cashier(v_property_id bigint, v_date date) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    WITH sh AS (
        SELECT s.* FROM cashier_shifts s
         WHERE s.property_id = v_property_id AND s.opened_business_date <= v_date
           AND (s.opened_business_date = v_date OR s.closed_business_date = v_date
                OR EXISTS (SELECT 1 FROM postings p
                            WHERE p.shift_id = s.id AND p.business_date = v_date))
    ), l AS (
        SELECT p.shift_id, p.type, p.amount, c.kind, c.payment_method AS method
          FROM postings p JOIN trx_codes c ON c.id = p.trx_code_id
         WHERE p.shift_id IN (SELECT sh.id FROM sh) AND p.business_date = v_date
    ), m AS (
        SELECT l.shift_id, l.method, count(*) AS n,
               (-coalesce(sum(l.amount) FILTER (WHERE l.amount < 0), 0))::bigint AS received,
               coalesce(sum(l.amount) FILTER (WHERE l.amount > 0), 0)::bigint AS refunded,
               (-sum(l.amount))::bigint AS net
          FROM l WHERE l.kind = 'payment' GROUP BY l.shift_id, l.method
    )
    SELECT jsonb_build_object(
        'shifts', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                              'shift_id', sh.id, 'user', sh.username,
                              'status', CASE WHEN sh.closed_business_date <= v_date
                                             THEN 'closed' ELSE 'open' END,
                              'float', sh.opening_float, 'opened_at', sh.opened_at,
                              'opened_business_date', sh.opened_business_date,
                              'closed_at', CASE WHEN sh.closed_business_date <= v_date
                                                THEN sh.closed_at END,
                              'by_method', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                                                   'method', m.method, 'count', m.n,
                                                   'received', m.received,
                                                   'refunded', m.refunded, 'net', m.net)
                                                   ORDER BY m.method), '[]'::jsonb)
                                              FROM m WHERE m.shift_id = sh.id),
                              'paid_outs', (SELECT coalesce(sum(l.amount), 0)::bigint FROM l
                                             WHERE l.shift_id = sh.id AND l.kind = 'paid_out'),
                              'voids', (SELECT count(*) FROM l
                                         WHERE l.shift_id = sh.id AND l.type = 'void'),
                              'closing', CASE WHEN sh.closed_business_date = v_date
                                              THEN jsonb_build_object(
                                                       'declared', sh.declared,
                                                       'expected_cash', sh.expected_cash,
                                                       'difference', sh.difference) END)
                              ORDER BY sh.id), '[]'::jsonb) FROM sh),
        'methods', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                               'method', x.method, 'count', x.n, 'received', x.received,
                               'refunded', x.refunded, 'net', x.net) ORDER BY x.method),
                           '[]'::jsonb)
                      FROM (SELECT m.method, sum(m.n)::bigint AS n,
                                   sum(m.received)::bigint AS received,
                                   sum(m.refunded)::bigint AS refunded, sum(m.net)::bigint AS net
                              FROM m GROUP BY m.method) x),
        'totals', jsonb_build_object(
            'shifts', (SELECT count(*) FROM sh),
            'net', (SELECT coalesce(sum(m.net), 0)::bigint FROM m),
            'paid_outs', (SELECT coalesce(sum(l.amount), 0)::bigint FROM l
                           WHERE l.kind = 'paid_out')))
$$;

-- Half-away-from-zero rounding of num / den (den > 0) in integers.
CREATE FUNCTION fl_audit_div_round(num bigint, den bigint) RETURNS bigint
LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT CASE WHEN den = 0 THEN NULL
                ELSE (num / den) + CASE WHEN 2 * abs(num % den) >= den
                                        THEN sign(num)::bigint ELSE 0 END END
$$;

-- Room statistics of v_date: rooms (as counted when the date rolled, v_rooms: {total,
-- out_of_order}), rooms sold (distinct rooms of the stays in house), complimentary rooms
-- (every stay in the room at rate 0), guests, arrivals, departures, room revenue (the rooms
-- department's lines of the day), occupancy in basis points, ADR and RevPAR in minor units,
-- each rounded half away from zero.
CREATE FUNCTION fl_audit_report_room_stats(v_property_id bigint, v_date date, v_rooms jsonb)
RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
    total bigint;
    ooo bigint;
    avail bigint;
    sold bigint;
    comp bigint;
    rev bigint;
    ad bigint;
    ch bigint;
BEGIN
    total := coalesce((v_rooms ->> 'total')::bigint,
                      (SELECT count(*) FROM rooms WHERE property_id = v_property_id));
    ooo := coalesce((v_rooms ->> 'out_of_order')::bigint,
                    (SELECT count(*) FROM rooms WHERE property_id = v_property_id
                                                  AND status = 'out_of_order'));
    avail := total - ooo;
    SELECT count(DISTINCT s.room_id), coalesce(sum(s.adults), 0), coalesce(sum(s.children), 0)
      INTO sold, ad, ch FROM fl_audit_in_house(v_property_id, v_date) s;
    SELECT count(*) INTO comp FROM (
        SELECT s.room_id FROM fl_audit_in_house(v_property_id, v_date) s
         GROUP BY s.room_id HAVING max(s.rate) = 0) x;
    SELECT coalesce(sum(p.amount), 0)::bigint INTO rev
      FROM postings p JOIN trx_codes c ON c.id = p.trx_code_id
     WHERE p.property_id = v_property_id AND p.business_date = v_date
       AND c.department = 'rooms' AND c.kind = 'charge'
       AND p.type NOT IN ('transfer_in', 'transfer_out');
    RETURN jsonb_build_object(
        'rooms_total', total, 'rooms_out_of_order', ooo, 'rooms_available', avail,
        'rooms_sold', sold, 'complimentary', comp, 'adults', ad, 'children', ch,
        'arrivals', (SELECT count(*) FROM stays s
                      WHERE s.property_id = v_property_id AND s.arrival = v_date),
        'departures', (SELECT count(*) FROM stays s
                        WHERE s.property_id = v_property_id AND s.checkout_date = v_date),
        'room_revenue', rev,
        'occupancy_bp', CASE WHEN avail > 0 THEN fl_audit_div_round(sold * 10000, avail) END,
        'adr', CASE WHEN sold > 0 THEN fl_audit_div_round(rev, sold) ELSE 0 END,
        'revpar', CASE WHEN avail > 0 THEN fl_audit_div_round(rev, avail) END);
END
$$;

-- High balances at the end of v_date: stays in house whose balance (all windows) is over their
-- credit limit or at least settings.audit_high_balance, open groups whose master is over the
-- group's limit.
CREATE FUNCTION fl_audit_report_high_balance(v_property_id bigint, v_date date) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
    threshold bigint := fl_audit_setting_int((SELECT settings FROM properties
                                               WHERE id = v_property_id),
                                              'audit_high_balance', NULL, 0, 1000000000000);
BEGIN
    RETURN jsonb_build_object(
        'threshold', threshold,
        'items', (SELECT coalesce(jsonb_agg(x.j ORDER BY x.o, x.k), '[]'::jsonb) FROM (
            SELECT 1 AS o, s.id AS k, jsonb_build_object(
                       'kind', 'stay', 'stay_id', s.id, 'number', s.number, 'room', rm.number,
                       'guest', g.first_name || ' ' || g.last_name, 'balance', b.bal,
                       'credit_limit', s.credit_limit,
                       'over_limit', coalesce(b.bal > s.credit_limit, false),
                       'over_by', CASE WHEN b.bal > s.credit_limit
                                       THEN b.bal - s.credit_limit END) AS j
              FROM fl_audit_in_house(v_property_id, v_date) s
              JOIN rooms rm ON rm.id = s.room_id JOIN guests g ON g.id = s.guest_id
              CROSS JOIN LATERAL (SELECT coalesce(sum(fb.balance), 0)::bigint AS bal
                                    FROM fl_audit_folio_balances(v_property_id, v_date) fb
                                   WHERE fb.stay_id = s.id) b
             WHERE b.bal > s.credit_limit OR b.bal >= threshold
            UNION ALL
            SELECT 2, gr.id, jsonb_build_object(
                       'kind', 'group', 'group_id', gr.id, 'group', gr.code, 'name', gr.name,
                       'balance', fb.balance, 'credit_limit', gr.credit_limit,
                       'over_limit', true, 'over_by', fb.balance - gr.credit_limit)
              FROM groups gr
              JOIN fl_audit_folio_balances(v_property_id, v_date) fb
                ON fb.folio_id = gr.master_folio_id
             WHERE gr.property_id = v_property_id AND gr.arrival <= v_date
               AND gr.status = 'open' AND fb.balance > gr.credit_limit) x));
END
$$;

-- One report of a date. v_run gives the pre-check findings, the trial balance and the room
-- count of the audit; without it (a live report) they are computed now.
CREATE FUNCTION fl_audit_report_compute(v_property_id bigint, v_date date, v_kind text,
                                        v_run bigint) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
    tb jsonb;
    pre jsonb;
    rooms jsonb;
BEGIN
    IF v_run IS NOT NULL THEN
        SELECT detail INTO tb FROM audit_steps WHERE run_id = v_run AND step = 'verify';
        SELECT detail INTO pre FROM audit_steps WHERE run_id = v_run AND step = 'precheck';
        SELECT detail -> 'rooms' INTO rooms FROM audit_steps WHERE run_id = v_run AND step = 'roll';
    END IF;
    RETURN CASE v_kind
        WHEN 'precheck' THEN coalesce(pre, fl_audit_precheck(
                                 (SELECT p FROM properties p WHERE p.id = v_property_id), v_date))
        WHEN 'trial_balance' THEN coalesce(tb, fl_audit_trial_balance(v_property_id, v_date))
        WHEN 'revenue' THEN fl_audit_report_revenue(v_property_id, v_date)
        WHEN 'payments' THEN fl_audit_report_payments(v_property_id, v_date)
        WHEN 'guest_ledger' THEN fl_audit_report_guest_ledger(v_property_id, v_date)
        WHEN 'city_ledger' THEN fl_audit_report_city_ledger(v_property_id, v_date)
        WHEN 'deposits' THEN fl_audit_report_deposits(v_property_id, v_date, tb)
        WHEN 'cashier' THEN fl_audit_report_cashier(v_property_id, v_date)
        WHEN 'room_stats' THEN fl_audit_report_room_stats(v_property_id, v_date, rooms)
        WHEN 'no_shows' THEN jsonb_build_object(
            'items', '[]'::jsonb,
            'note', 'reservations are not modelled: a stay exists from its check-in, so no '
                    'expected arrival can fail to come')
        WHEN 'high_balance' THEN fl_audit_report_high_balance(v_property_id, v_date)
    END;
END
$$;

-- ---------------------------------------------------------------------------------------------
-- The post step: room and tax of one chunk of planned stays
-- ---------------------------------------------------------------------------------------------

-- Posts room (the stay's rate on its rate code, with the code's generated taxes) and the city
-- tax (settings.city_tax: code, amount_per_guest_night; per adult) of the planned stays after
-- seq v_after, at most v_limit of them, dated with the closing date, source night_audit,
-- routed like any charge addressed to window 1 (fl_route_target's rules). Set-based: one
-- statement for the main lines of each kind, one for the generated lines. Returns the number
-- of stays posted and the last seq.
CREATE FUNCTION fl_audit_post_chunk(r audit_runs, v_after integer, v_limit integer,
                                    OUT posted integer, OUT last_seq integer)
LANGUAGE plpgsql AS $$
DECLARE
    pr properties;
    ct trx_codes;
    ct_amount bigint := 0;
    ct_settings jsonb;
    chunk audit_stays[];
    v_item text;
BEGIN
    SELECT * INTO pr FROM properties WHERE id = r.property_id FOR SHARE;
    ct_settings := pr.settings -> 'city_tax';
    IF jsonb_typeof(ct_settings) = 'object' THEN
        SELECT * INTO ct FROM trx_codes
         WHERE property_id = pr.id AND code = ct_settings ->> 'code'
           AND kind IN ('charge', 'tax') AND enabled;
        IF NOT FOUND THEN
            PERFORM fl_fail('invalid_settings',
                            format('settings.city_tax.code %s is not an enabled charge or tax '
                                   'code of property %s', ct_settings ->> 'code', pr.code));
        END IF;
        ct_amount := fl_audit_setting_int(ct_settings, 'amount_per_guest_night', 0, 0,
                                          1000000000);
    END IF;

    SELECT array_agg(a ORDER BY a.seq) INTO chunk
      FROM (SELECT * FROM audit_stays WHERE run_id = r.id AND seq > v_after
             ORDER BY seq LIMIT v_limit) a;
    posted := coalesce(cardinality(chunk), 0);
    IF posted = 0 THEN
        RETURN;
    END IF;
    last_seq := chunk[posted].seq;

    -- lock order of 004: the property (above), the stays, then the folios (in id order)
    PERFORM 1 FROM stays WHERE id IN (SELECT c.stay_id FROM unnest(chunk) c)
      ORDER BY id FOR NO KEY UPDATE;

    CREATE TEMP TABLE IF NOT EXISTS audit_tmp_lines (
        seq integer, stay_id bigint, item text, reference text, folio_id bigint,
        routed_from bigint, code_id bigint, line integer, type text, amount bigint,
        quantity integer, unit_amount bigint, description text, parent_id bigint
    ) ON COMMIT DROP;
    TRUNCATE audit_tmp_lines;

    INSERT INTO audit_tmp_lines (seq, stay_id, item, reference, folio_id, routed_from, code_id,
                                 line, type, amount, quantity, unit_amount, description)
    WITH items AS (
        SELECT a.seq, a.stay_id, a.folio_id AS w1, s.number AS stay_number, rm.number AS room,
               a.adults, x.item, x.code_id, x.qty, x.unit, x.qty::bigint * x.unit AS gross
          FROM unnest(chunk) a
          JOIN stays s ON s.id = a.stay_id
          JOIN rooms rm ON rm.id = a.room_id
          CROSS JOIN LATERAL (VALUES ('room', a.rate_code_id, 1, a.rate),
                                     ('city_tax', ct.id, a.adults, ct_amount))
                             AS x(item, code_id, qty, unit)
         WHERE x.code_id IS NOT NULL AND (x.item = 'room' OR x.qty::bigint * x.unit > 0)
    ), routed AS (
        SELECT i.*, c.kind, c.description AS code_desc,
               coalesce(t.id, i.w1) AS target, t.id IS NOT NULL AS routed
          FROM items i
          JOIN trx_codes c ON c.id = i.code_id
          LEFT JOIN LATERAL (SELECT rr.to_folio_id FROM routing_rules rr
                              WHERE rr.stay_id = i.stay_id AND rr.active
                                AND (rr.code_id = c.id
                                     OR (rr.code_id IS NULL AND rr.department = c.department))
                              ORDER BY rr.code_id IS NULL, rr.id LIMIT 1) top ON true
          LEFT JOIN folios t ON t.id = top.to_folio_id AND t.status = 'open' AND t.id <> i.w1
    ), pairs AS (
        SELECT DISTINCT code_id, gross FROM items
    ), split AS (
        SELECT pairs.code_id, pairs.gross, sp.seq AS line, sp.trx_code_id, sp.kind, sp.amount
          FROM pairs CROSS JOIN LATERAL fl_code_split(pairs.code_id, pairs.gross) sp
    )
    SELECT ro.seq, ro.stay_id, ro.item, ro.stay_number, ro.target,
           CASE WHEN ro.routed THEN ro.w1 END, sp.trx_code_id, sp.line,
           CASE WHEN sp.line = 0 THEN CASE WHEN ro.kind = 'tax' THEN 'tax' ELSE 'charge' END
                ELSE sp.kind END,
           sp.amount,
           CASE WHEN sp.line = 0 THEN ro.qty ELSE 1 END,
           CASE WHEN sp.line = 0 THEN ro.unit ELSE sp.amount END,
           CASE WHEN sp.line = 0 AND ro.item = 'room'
                    THEN left(format('%s, room %s, night of %s', ro.code_desc, ro.room,
                                     r.business_date), 200)
                WHEN sp.line = 0
                    THEN left(format('%s, %s guest(s), night of %s', ro.code_desc, ro.adults,
                                     r.business_date), 200)
                ELSE (SELECT g.description FROM trx_codes g WHERE g.id = sp.trx_code_id) END
      FROM routed ro
      JOIN split sp ON sp.code_id = ro.code_id AND sp.gross = ro.gross
     WHERE sp.line = 0 OR sp.amount <> 0;

    -- statistics, so that the joins below hash instead of looping over the lines
    ANALYZE audit_tmp_lines;
    PERFORM 1 FROM folios WHERE id IN (SELECT DISTINCT l.folio_id FROM audit_tmp_lines l)
      ORDER BY id FOR NO KEY UPDATE;

    -- the main lines, one statement per kind of item (a stay's reference is unique in each)
    FOREACH v_item IN ARRAY ARRAY['room', 'city_tax'] LOOP
        WITH ins AS (
            INSERT INTO postings (property_id, folio_id, business_date, trx_code_id, type,
                                  amount, quantity, unit_amount, description, reference, source,
                                  operator, routed_from_folio_id)
            SELECT pr.id, l.folio_id, r.business_date, l.code_id, l.type, l.amount, l.quantity,
                   l.unit_amount, l.description, l.reference, 'night_audit', r.started_by,
                   l.routed_from
              FROM audit_tmp_lines l WHERE l.item = v_item AND l.line = 0 ORDER BY l.seq
            RETURNING id, reference)
        UPDATE audit_tmp_lines l SET parent_id = ins.id
          FROM ins WHERE l.item = v_item AND l.reference = ins.reference;
    END LOOP;

    -- the generated lines (tax, service) after their charge, on its folio
    INSERT INTO postings (property_id, folio_id, business_date, trx_code_id, type, amount,
                          quantity, unit_amount, description, reference, source, operator,
                          routed_from_folio_id, parent_id)
    SELECT pr.id, l.folio_id, r.business_date, l.code_id, l.type, l.amount, 1, l.amount,
           l.description, l.reference, 'night_audit', r.started_by, l.routed_from, l.parent_id
      FROM audit_tmp_lines l WHERE l.line > 0 ORDER BY l.seq, l.item, l.line;

    INSERT INTO audit_room_posts (stay_id, business_date, property_id, run_id, room_posting_id,
                                  tax_posting_id)
    SELECT l.stay_id, r.business_date, pr.id, r.id,
           max(l.parent_id) FILTER (WHERE l.item = 'room'),
           max(l.parent_id) FILTER (WHERE l.item = 'city_tax')
      FROM audit_tmp_lines l WHERE l.line = 0
     GROUP BY l.stay_id;

    -- the change log, one entry per folio posted to (as fl_post_charge writes one per call)
    INSERT INTO change_log (actor, property_id, entity, entity_id, action, detail)
    SELECT r.started_by, pr.id, 'folio', l.folio_id, 'post',
           jsonb_build_object('source', 'night_audit', 'run_id', r.id,
                              'business_date', r.business_date,
                              'posting_ids', jsonb_agg(l.parent_id ORDER BY l.seq, l.item),
                              'total', sum(l.amount))
      FROM audit_tmp_lines l WHERE l.line = 0
     GROUP BY l.folio_id;
END
$$;

-- ---------------------------------------------------------------------------------------------
-- Claim, step, fail
-- ---------------------------------------------------------------------------------------------

-- audit.run (ctx: the caller; NULL for the daemon's schedule): takes the property's unfinished
-- run (a resumed run keeps its business date and step) or starts one for the open business
-- date. p: {"property", "date"}: date, when given, must be the date the run closes. Refused
-- with audit_in_progress (data.status) when another daemon holds a live lease on the run.
-- -> {"state": "claimed", "created", "resumed", "property_id", "property", "run"}
CREATE FUNCTION fl_audit_claim(ctx jsonb, p jsonb, v_owner text, v_trigger text) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    pr properties;
    r audit_runs;
    v_date date;
    created boolean := false;
    resumed boolean := false;
BEGIN
    p := fl_params(p);
    PERFORM fl_check_keys(p, ARRAY['property', 'date'], '');
    PERFORM fl_require_role(ctx, 'audit.run', 'auditor', 'manager');
    pr := fl_property_scope(ctx, p);
    v_date := fl_p_date(p, 'date', '', false);
    PERFORM pg_advisory_xact_lock(fl_audit_lock_class(), pr.id::integer);
    SELECT * INTO pr FROM properties WHERE id = pr.id;
    SELECT * INTO r FROM audit_runs
     WHERE property_id = pr.id AND status IN ('running', 'blocked', 'failed') FOR UPDATE;
    IF FOUND THEN
        IF v_date IS NOT NULL AND v_date <> r.business_date THEN
            PERFORM fl_fail_data('invalid_params',
                                 format('the audit of %s is unfinished: resume it before any '
                                        'other date (date %s)', r.business_date, v_date),
                                 jsonb_build_object('business_date', r.business_date));
        END IF;
        IF r.status = 'running' AND r.owner <> v_owner
           AND r.lease_at > now() - fl_audit_lease() THEN
            PERFORM fl_fail_data('audit_in_progress',
                                 format('the audit of %s of %s is running (step %s, on %s)',
                                        pr.code, r.business_date, r.step, r.owner),
                                 jsonb_build_object('status', fl_audit_status_json(pr.id)));
        END IF;
        IF NOT (r.status = 'running' AND r.owner = v_owner) THEN
            UPDATE audit_runs SET status = 'running', owner = v_owner, lease_at = now(),
                                  claims = claims + 1, updated_at = now()
             WHERE id = r.id RETURNING * INTO r;
            UPDATE audit_steps SET status = 'running'
             WHERE run_id = r.id AND step = r.step AND status = 'failed';
            PERFORM fl_log(ctx, pr.id, 'audit_run', r.id, 'resume',
                           jsonb_build_object('business_date', r.business_date, 'step', r.step,
                                              'owner', v_owner, 'trigger', v_trigger));
        END IF;
        resumed := true;
    ELSE
        IF v_date IS NOT NULL AND v_date <> pr.business_date THEN
            PERFORM fl_fail_data('not_open',
                                 format('%s is not the open business date of %s (%s): only the '
                                        'open date can be audited', v_date, pr.code,
                                        pr.business_date),
                                 jsonb_build_object('business_date', pr.business_date));
        END IF;
        INSERT INTO audit_runs (property_id, business_date, owner, started_by, trigger)
        VALUES (pr.id, pr.business_date, v_owner,
                CASE WHEN ctx IS NULL THEN 'schedule' ELSE fl_actor(ctx) END, v_trigger)
        RETURNING * INTO r;
        INSERT INTO audit_steps (run_id, seq, step, total)
        SELECT r.id, i, (fl_audit_step_names())[i],
               CASE (fl_audit_step_names())[i] WHEN 'reports'
                    THEN cardinality(fl_audit_report_kinds()) WHEN 'post' THEN NULL ELSE 1 END
          FROM generate_series(1, cardinality(fl_audit_step_names())) AS i;
        PERFORM fl_log(ctx, pr.id, 'audit_run', r.id, 'start',
                       jsonb_build_object('business_date', r.business_date, 'owner', v_owner,
                                          'trigger', v_trigger));
        created := true;
    END IF;
    RETURN jsonb_build_object('state', 'claimed', 'created', created, 'resumed', resumed,
                              'property_id', pr.id, 'property', pr.code,
                              'run', fl_audit_run_json(r));
END
$$;

-- Marks a step done and moves the run to the next one.
CREATE FUNCTION fl_audit_step_done(r audit_runs, v_detail jsonb) RETURNS audit_runs
LANGUAGE plpgsql AS $$
DECLARE
    names text[] := fl_audit_step_names();
    nxt text := names[array_position(names, r.step) + 1];
    n audit_runs;
BEGIN
    UPDATE audit_steps SET status = 'done', done_at = clock_timestamp(),
                           done = coalesce(total, done), detail = coalesce(v_detail, detail)
     WHERE run_id = r.id AND step = r.step;
    UPDATE audit_runs SET step = coalesce(nxt, step), updated_at = now()
     WHERE id = r.id RETURNING * INTO n;
    RETURN n;
END
$$;

-- One step of a run (one chunk of the post step, one report), in the caller's transaction.
-- v_owner: the daemon instance calling. -> the run as fl_audit_run_json plus "state":
--   running  more to do: call again
--   done     the date is closed and the reports are stored
--   blocked  a blocking pre-check found something (run.blockers); audit.run again resumes it
--   failed   run.error says why; audit.run again retries the step
--   busy     another transaction holds the property's audit lock: call again in a moment
--   taken    another daemon owns the run and its lease is fresh: stop driving it
CREATE FUNCTION fl_audit_step(v_run_id bigint, v_owner text) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    r audit_runs;
    pr properties;
    st audit_steps;
    v_delay bigint;
    v_chunk bigint;
    v_state text := 'running';
    res record;
    found_ jsonb;
    tb jsonb;
    kinds text[] := fl_audit_report_kinds();
    v_kind text;
    n bigint;
BEGIN
    SELECT * INTO r FROM audit_runs WHERE id = v_run_id;
    IF NOT FOUND THEN
        PERFORM fl_fail('not_found', format('audit run %s does not exist', v_run_id));
    END IF;
    IF NOT pg_try_advisory_xact_lock(fl_audit_lock_class(), r.property_id::integer) THEN
        RETURN fl_audit_run_json(r) || jsonb_build_object('state', 'busy');
    END IF;
    SELECT * INTO r FROM audit_runs WHERE id = v_run_id FOR UPDATE;
    IF r.status <> 'running' THEN
        RETURN fl_audit_run_json(r) || jsonb_build_object('state', r.status);
    END IF;
    IF r.owner <> v_owner AND r.lease_at > now() - fl_audit_lease() THEN
        RETURN fl_audit_run_json(r) || jsonb_build_object('state', 'taken');
    END IF;
    UPDATE audit_runs SET owner = v_owner, lease_at = now(), updated_at = now()
     WHERE id = r.id RETURNING * INTO r;
    SELECT * INTO pr FROM properties WHERE id = r.property_id;
    v_delay := fl_audit_setting_int(pr.settings, 'audit_step_delay_ms', 0, 0, 4000);
    IF v_delay > 0 THEN
        PERFORM pg_sleep(v_delay / 1000.0);
    END IF;
    UPDATE audit_steps SET status = 'running', started_at = coalesce(started_at, clock_timestamp())
     WHERE run_id = r.id AND step = r.step RETURNING * INTO st;

    IF r.step = 'precheck' THEN
        found_ := fl_audit_precheck(pr, r.business_date);
        IF jsonb_array_length(found_ -> 'blocking') > 0 THEN
            UPDATE audit_steps SET detail = found_, status = 'failed'
             WHERE run_id = r.id AND step = 'precheck';
            UPDATE audit_runs SET status = 'blocked', blockers = found_, updated_at = now()
             WHERE id = r.id RETURNING * INTO r;
            PERFORM fl_log(jsonb_build_object('user', r.started_by), pr.id, 'audit_run', r.id,
                           'blocked', jsonb_build_object('blocking', found_ -> 'blocking'));
            RETURN fl_audit_run_json(r) || jsonb_build_object('state', 'blocked');
        END IF;
        UPDATE audit_runs SET blockers = NULL WHERE id = r.id;
        r := fl_audit_step_done(r, found_);

    ELSIF r.step = 'roll' THEN
        -- the property row FOR UPDATE (as fl_close_business_date): keep this short
        SELECT * INTO pr FROM properties WHERE id = r.property_id FOR UPDATE;
        IF pr.business_date <> r.business_date THEN
            -- business_date.close closed the date meanwhile: this run has nothing to do
            UPDATE audit_steps SET status = 'failed' WHERE run_id = r.id AND step = 'roll';
            UPDATE audit_runs SET status = 'cancelled', finished_at = clock_timestamp(),
                   updated_at = now(),
                   error = jsonb_build_object('reason', 'date_closed', 'step', 'roll',
                       'message', format('business date %s was closed outside the audit (the '
                                         'open date is %s): run the audit of the open date',
                                         r.business_date, pr.business_date))
             WHERE id = r.id RETURNING * INTO r;
            RETURN fl_audit_run_json(r) || jsonb_build_object('state', 'cancelled');
        END IF;
        -- the open date moves now (fl_close_business_date's update and log); the date is
        -- recorded as closed in business_dates when the audit finishes, after its own
        -- postings, so that no posting is ever created after its date's closed_at
        UPDATE properties SET business_date = business_date + 1, updated_at = now(),
                              updated_by = r.started_by
         WHERE id = pr.id;
        PERFORM fl_log(jsonb_build_object('user', r.started_by), pr.id, 'business_date', pr.id,
                       'roll', jsonb_build_object('closing', r.business_date,
                                                  'business_date', r.business_date + 1,
                                                  'audit_run', r.id));
        r := fl_audit_step_done(r, jsonb_build_object(
            'closing', r.business_date, 'business_date', r.business_date + 1,
            'rooms', (SELECT jsonb_build_object(
                                 'total', count(*),
                                 'out_of_order', count(*) FILTER (WHERE status = 'out_of_order'))
                        FROM rooms WHERE property_id = pr.id)));

    ELSIF r.step = 'plan' THEN
        -- the stays in house at the end of the closing date: arrived by then, not checked out
        -- by then (a checkout since the roll is dated the next day)
        INSERT INTO audit_stays (run_id, seq, stay_id, folio_id, room_id, rate, rate_code_id,
                                 adults, children)
        SELECT r.id, row_number() OVER (ORDER BY length(rm.number), rm.number, s.id), s.id,
               w.id, s.room_id, s.rate, s.rate_code_id, s.adults, s.children
          FROM fl_audit_in_house(pr.id, r.business_date) s
          JOIN rooms rm ON rm.id = s.room_id
          JOIN folios w ON w.stay_id = s.id AND w.window_no = 1;
        GET DIAGNOSTICS n = ROW_COUNT;
        UPDATE audit_steps SET total = n WHERE run_id = r.id AND step = 'post';
        r := fl_audit_step_done(r, jsonb_build_object('stays', n));

    ELSIF r.step = 'post' THEN
        v_chunk := fl_audit_setting_int(pr.settings, 'audit_chunk', 200, 1, 5000);
        SELECT * INTO res
          FROM fl_audit_post_chunk(r, coalesce((st.detail ->> 'last_seq')::integer, 0),
                                   v_chunk::integer);
        IF res.posted > 0 THEN
            UPDATE audit_steps SET done = done + res.posted,
                                   detail = jsonb_build_object('last_seq', res.last_seq)
             WHERE run_id = r.id AND step = 'post' RETURNING * INTO st;
        END IF;
        IF NOT EXISTS (SELECT 1 FROM audit_stays a
                        WHERE a.run_id = r.id
                          AND a.seq > coalesce((st.detail ->> 'last_seq')::integer, 0)) THEN
            r := fl_audit_step_done(r, NULL);
        END IF;

    ELSIF r.step = 'verify' THEN
        tb := fl_audit_trial_balance(pr.id, r.business_date);
        IF NOT (tb ->> 'ok')::boolean THEN
            UPDATE audit_steps SET status = 'failed', detail = tb
             WHERE run_id = r.id AND step = 'verify';
            UPDATE audit_runs SET status = 'failed', updated_at = now(),
                   error = jsonb_build_object('reason', 'verification_failed', 'step', 'verify',
                       'message', 'the trial balance or a folio balance does not hold: see the '
                                  'verify step''s detail', 'trial_balance', tb)
             WHERE id = r.id RETURNING * INTO r;
            PERFORM fl_log(jsonb_build_object('user', r.started_by), pr.id, 'audit_run', r.id,
                           'failed', jsonb_build_object('step', 'verify'));
            RETURN fl_audit_run_json(r) || jsonb_build_object('state', 'failed');
        END IF;
        r := fl_audit_step_done(r, tb);

    ELSIF r.step = 'reports' THEN
        SELECT u.k INTO v_kind FROM unnest(kinds) WITH ORDINALITY AS u(k, i)
         WHERE NOT EXISTS (SELECT 1 FROM audit_reports a
                            WHERE a.property_id = pr.id AND a.business_date = r.business_date
                              AND a.kind = u.k)
         ORDER BY u.i LIMIT 1;
        IF v_kind IS NOT NULL THEN
            INSERT INTO audit_reports (property_id, business_date, kind, run_id, content)
            VALUES (pr.id, r.business_date, v_kind, r.id,
                    fl_audit_report_compute(pr.id, r.business_date, v_kind, r.id));
            UPDATE audit_steps SET done = done + 1 WHERE run_id = r.id AND step = 'reports';
        END IF;
        IF NOT EXISTS (SELECT 1 FROM unnest(kinds) AS k
                        WHERE NOT EXISTS (SELECT 1 FROM audit_reports a
                                           WHERE a.property_id = pr.id
                                             AND a.business_date = r.business_date
                                             AND a.kind = k)) THEN
            r := fl_audit_step_done(r, NULL);
        END IF;

    ELSIF r.step = 'finish' THEN
        INSERT INTO business_dates (property_id, business_date, closed_by)
        VALUES (pr.id, r.business_date, r.started_by);
        PERFORM fl_log(jsonb_build_object('user', r.started_by), pr.id, 'business_date', pr.id,
                       'close', jsonb_build_object('closed', r.business_date,
                                                   'business_date', pr.business_date,
                                                   'audit_run', r.id));
        UPDATE audit_steps SET status = 'done', done = 1, done_at = clock_timestamp()
         WHERE run_id = r.id AND step = 'finish';
        UPDATE audit_runs SET status = 'done', finished_at = clock_timestamp(), error = NULL,
                              updated_at = now()
         WHERE id = r.id RETURNING * INTO r;
        PERFORM fl_log(jsonb_build_object('user', r.started_by), pr.id, 'audit_run', r.id,
                       'finish', jsonb_build_object('business_date', r.business_date));
        v_state := 'done';
    END IF;
    RETURN fl_audit_run_json(r) || jsonb_build_object('state', v_state);
END
$$;

-- The daemon could not complete a step (an error other than a transient one): the run stops
-- as failed with the error; audit.run resumes it at that step. Only the owner may do this.
CREATE FUNCTION fl_audit_fail(v_run_id bigint, v_owner text, v_reason text, v_message text)
RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    r audit_runs;
BEGIN
    UPDATE audit_runs SET status = 'failed', updated_at = now(),
           error = jsonb_build_object('reason', coalesce(v_reason, 'internal'), 'step', step,
                                      'message', left(coalesce(v_message, ''), 1000))
     WHERE id = v_run_id AND owner = v_owner AND status = 'running'
    RETURNING * INTO r;
    IF FOUND THEN
        UPDATE audit_steps SET status = 'failed' WHERE run_id = r.id AND step = r.step;
        PERFORM fl_log(jsonb_build_object('user', r.started_by), r.property_id, 'audit_run',
                       r.id, 'failed', r.error);
    ELSE
        SELECT * INTO r FROM audit_runs WHERE id = v_run_id;
    END IF;
    RETURN fl_audit_run_json(r) || jsonb_build_object('state', r.status);
END
$$;

-- The properties the daemon's schedule should audit now (settings.audit_schedule true): the
-- open date's audit is due and no run is unfinished; or a run is running and its owner is this
-- daemon (restarted) or its lease expired; or it was blocked more than 5 minutes ago. A failed
-- run waits for an auditor. -> [{"property_id", "property"}]
CREATE FUNCTION fl_audit_due(v_owner text) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT coalesce(jsonb_agg(jsonb_build_object('property_id', pr.id, 'property', pr.code)
                              ORDER BY pr.id), '[]'::jsonb)
      FROM properties pr
      LEFT JOIN audit_runs r ON r.property_id = pr.id
                             AND r.status IN ('running', 'blocked', 'failed')
     WHERE fl_audit_scheduled(pr.settings)
       AND CASE WHEN r.id IS NULL THEN now() >= fl_audit_due_at(pr)
                WHEN r.status = 'running'
                    THEN r.owner = v_owner OR r.lease_at < now() - fl_audit_lease()
                WHEN r.status = 'blocked' THEN r.updated_at < now() - interval '5 minutes'
                ELSE false END
$$;

-- ---------------------------------------------------------------------------------------------
-- Methods
-- ---------------------------------------------------------------------------------------------

-- audit.status: {"property"} -> fl_audit_status_json
CREATE FUNCTION api_audit_status(ctx jsonb, p jsonb) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
BEGIN
    p := fl_params(p);
    PERFORM fl_check_keys(p, ARRAY['property'], '');
    RETURN fl_audit_status_json((fl_property_scope(ctx, p)).id);
END
$$;

-- audit.report: {"property", "date", "kind"}: a stored report of a closed date; without kind
-- the kinds stored for the date and the run that stored them.
CREATE FUNCTION api_audit_report(ctx jsonb, p jsonb) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
    pr properties;
    v_date date;
    v_kind text;
    a audit_reports;
BEGIN
    p := fl_params(p);
    PERFORM fl_check_keys(p, ARRAY['property', 'date', 'kind'], '');
    pr := fl_property_scope(ctx, p);
    v_date := fl_p_date(p, 'date', '', true);
    v_kind := fl_p_enum(p, 'kind', '', false, fl_audit_report_kinds());
    IF v_kind IS NULL THEN
        IF NOT EXISTS (SELECT 1 FROM audit_reports
                        WHERE property_id = pr.id AND business_date = v_date) THEN
            PERFORM fl_fail('not_found', format('no stored reports for %s of %s (the audit of a '
                                                'date stores them when it closes it)', v_date,
                                                pr.code));
        END IF;
        RETURN jsonb_build_object(
            'property', pr.code, 'business_date', v_date,
            'kinds', (SELECT jsonb_agg(kind ORDER BY array_position(fl_audit_report_kinds(), kind))
                        FROM audit_reports WHERE property_id = pr.id AND business_date = v_date),
            'run', (SELECT fl_audit_run_json(r) FROM audit_runs r
                     WHERE r.property_id = pr.id AND r.business_date = v_date));
    END IF;
    SELECT * INTO a FROM audit_reports
     WHERE property_id = pr.id AND business_date = v_date AND kind = v_kind;
    IF NOT FOUND THEN
        PERFORM fl_fail('not_found', format('no stored %s report for %s of %s', v_kind, v_date,
                                            pr.code));
    END IF;
    RETURN jsonb_build_object('property', pr.code, 'business_date', a.business_date,
                              'kind', a.kind, 'run_id', a.run_id, 'created_at', a.created_at,
                              'final', true, 'content', a.content);
END
$$;

-- The report.* methods: {"property", "date"} (default: the open business date). A closed date
-- with a stored report gives the stored one (final: true); otherwise the report is computed
-- now from the postings (final: false: the open date can still change).
CREATE FUNCTION fl_report_get(ctx jsonb, p jsonb, v_kind text) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
    pr properties;
    v_date date;
    a audit_reports;
BEGIN
    p := fl_params(p);
    PERFORM fl_check_keys(p, ARRAY['property', 'date'], '');
    pr := fl_property_scope(ctx, p);
    v_date := coalesce(fl_p_date(p, 'date', '', false), pr.business_date);
    IF v_date > pr.business_date THEN
        PERFORM fl_fail('invalid_params', format('%s is after the open business date %s',
                                                 v_date, pr.business_date));
    END IF;
    SELECT * INTO a FROM audit_reports
     WHERE property_id = pr.id AND business_date = v_date AND kind = v_kind;
    IF FOUND THEN
        RETURN jsonb_build_object('property', pr.code, 'business_date', v_date, 'kind', v_kind,
                                  'final', true, 'stored', true, 'created_at', a.created_at,
                                  'content', a.content);
    END IF;
    RETURN jsonb_build_object('property', pr.code, 'business_date', v_date, 'kind', v_kind,
                              'final', false, 'stored', false,
                              'content', fl_audit_report_compute(pr.id, v_date, v_kind, NULL));
END
$$;

-- report.in_house: the stays in house now (the open date) with their balances, or the stored
-- guest ledger's stays of a closed date.
CREATE FUNCTION api_report_in_house(ctx jsonb, p jsonb) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
    res jsonb := fl_report_get(ctx, p, 'guest_ledger');
BEGIN
    RETURN (res - 'content' - 'kind')
           || jsonb_build_object('kind', 'in_house',
                                 'items', res #> '{content,stays}',
                                 'totals', jsonb_build_object(
                                     'stays', res #> '{content,totals,stays}',
                                     'guests', res #> '{content,totals,guests}',
                                     'balance', res #> '{content,totals,in_house_balance}'));
END
$$;

CREATE FUNCTION api_report_trial_balance(ctx jsonb, p jsonb) RETURNS jsonb
LANGUAGE sql STABLE AS $$ SELECT fl_report_get(ctx, p, 'trial_balance') $$;

CREATE FUNCTION api_report_revenue(ctx jsonb, p jsonb) RETURNS jsonb
LANGUAGE sql STABLE AS $$ SELECT fl_report_get(ctx, p, 'revenue') $$;

CREATE FUNCTION api_report_high_balance(ctx jsonb, p jsonb) RETURNS jsonb
LANGUAGE sql STABLE AS $$ SELECT fl_report_get(ctx, p, 'high_balance') $$;

CREATE FUNCTION api_report_cashier(ctx jsonb, p jsonb) RETURNS jsonb
LANGUAGE sql STABLE AS $$ SELECT fl_report_get(ctx, p, 'cashier') $$;
