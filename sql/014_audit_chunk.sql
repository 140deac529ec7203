-- 014_audit_chunk.sql - the post step of the night audit commits 20 stays per transaction by
-- default instead of 200 (docs/audit.md, "Speed"). A chunk's stays and folios are locked until
-- it commits, so a posting to one of them waits for the chunk. With 200 stays that was up to
-- 263 ms in make bench, over the 250 ms a posting may wait. When the audit ran alone, chunks of
-- 50 gave 56-74 ms and chunks of 20 gave 9-36 ms, for a post step about a quarter longer
-- (BENCH_AUDIT_CHUNK). After the bench's load runs, both sizes showed a tail of 219-341 ms
-- that the chunk does not explain (docs/audit.md). settings.audit_chunk still sets the size
-- per property (1-5000).
--
-- The size now comes from fl_audit_chunk_size, so that tuning it again replaces that function
-- alone; fl_audit_step of 009 calls it and is otherwise unchanged.
--
-- Applied once by the migrate command inside one transaction; never edited once landed.

-- Stays per transaction of the post step: settings.audit_chunk, default 20.
CREATE FUNCTION fl_audit_chunk_size(v_settings jsonb) RETURNS bigint
LANGUAGE sql IMMUTABLE AS $$
    SELECT fl_audit_setting_int(v_settings, 'audit_chunk', 20, 1, 5000)
$$;

CREATE OR REPLACE FUNCTION fl_audit_step(v_run_id bigint, v_owner text) RETURNS jsonb
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
        v_chunk := fl_audit_chunk_size(pr.settings);
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
