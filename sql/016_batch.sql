-- 016_batch.sql - group commit of postings (docs/design.md, "Group commit").
--
-- foliod gathers the folio.post and pos.post requests that arrive while earlier ones are being
-- written and sends them as one statement, fl_batch(calls): one transaction, one commit, for
-- several postings. Each call runs in its own subtransaction (a BEGIN ... EXCEPTION block), so
-- a call that fails leaves nothing behind and takes no other call with it: its answer is the
-- error it raised, with the SQLSTATE, message, detail and hint the daemon would have got from
-- running it alone. The rules, answers and errors of each method are those of its API
-- function, which is called unchanged.
--
-- A call that loses a deadlock or a serialisation check (40P01, 40001) to another batch is run
-- once more after the others of its batch, in the same transaction, and answers the error only
-- if it fails again: batches hold the locks of their earlier calls until they commit, so two
-- batches can wait on each other where two single postings could not.
--
-- Applied once by the migrate command inside one transaction; never edited once landed.

-- One call of a batch: the methods that may be batched, each to its API function.
CREATE FUNCTION fl_batch_call(v_method text, ctx jsonb, p jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
BEGIN
    CASE v_method
    WHEN 'folio.post' THEN
        RETURN api_folio_post(ctx, p);
    WHEN 'pos.post' THEN
        RETURN api_pos_post(ctx, p);
    ELSE
        RAISE EXCEPTION 'fl_batch: method % cannot be batched', v_method
            USING ERRCODE = 'internal_error';
    END CASE;
END
$$;

-- calls: [{"m": method, "ctx": context, "p": params}, ...]. Answers, in the same order:
-- [{"ok": result} | {"error": {"sqlstate", "message", "detail", "hint"}}, ...].
CREATE FUNCTION fl_batch(calls jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    n integer := jsonb_array_length(calls);
    answers jsonb[] := array_fill(NULL::jsonb, ARRAY[n]);
    todo integer[];
    again integer[];
    i integer;
    c jsonb;
    v_state text;
    v_message text;
    v_detail text;
    v_hint text;
BEGIN
    IF n = 0 THEN
        RETURN '[]'::jsonb;
    END IF;
    todo := ARRAY(SELECT generate_series(1, n));
    FOR pass IN 1..2 LOOP
        again := '{}';
        FOREACH i IN ARRAY todo LOOP
            c := calls -> (i - 1);
            BEGIN
                answers[i] := jsonb_build_object(
                    'ok', fl_batch_call(c ->> 'm', c -> 'ctx', c -> 'p'));
            EXCEPTION WHEN OTHERS THEN
                GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_message = MESSAGE_TEXT,
                                        v_detail = PG_EXCEPTION_DETAIL,
                                        v_hint = PG_EXCEPTION_HINT;
                IF pass = 1 AND v_state IN ('40P01', '40001') THEN
                    again := again || i;
                ELSE
                    answers[i] := jsonb_build_object('error', jsonb_build_object(
                        'sqlstate', v_state, 'message', v_message,
                        'detail', coalesce(v_detail, ''), 'hint', coalesce(v_hint, '')));
                END IF;
            END;
        END LOOP;
        EXIT WHEN cardinality(again) = 0;
        todo := again;
    END LOOP;
    RETURN to_jsonb(answers);
END
$$;
