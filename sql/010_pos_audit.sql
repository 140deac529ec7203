-- foliod 010: POS postings during the night audit (NA night_audit).
--
-- While an audit of the property runs, an outlet whose policy has block_during_audit, or every
-- outlet of a property whose settings have audit_block_postings, is answered NA night_audit
-- (fl_audit_blocks_pos of 009). The answer is not stored with the key: like RY it means "not
-- posted, send the same message again later", and the same key then posts once the audit has
-- finished. A key that already has an answer is replayed as always, audit or not.
--
-- 007's api_pos_post stays as it is under a new name; the new api_pos_post asks first.

ALTER FUNCTION api_pos_post(jsonb, jsonb) RENAME TO fl_pos_post_unguarded;

CREATE FUNCTION api_pos_post(ctx jsonb, p jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    o outlets := fl_pos_outlet(ctx);
    v_key text;
    v_code text;
BEGIN
    -- a malformed message, a disabled outlet or a known key: 007 answers as always
    IF o.enabled AND jsonb_typeof(p) = 'object' AND jsonb_typeof(p -> 'key') = 'string' THEN
        v_key := p ->> 'key';
        IF fl_audit_blocks_pos(o.id)
           AND NOT EXISTS (SELECT 1 FROM pos_requests WHERE outlet_id = o.id AND key = v_key) THEN
            SELECT code INTO v_code FROM properties WHERE id = o.property_id;
            RETURN fl_pos_answer('NA', 'night_audit',
                format('the night audit of %s is running: send the posting again when it has '
                       'finished', v_code),
                jsonb_build_object('key', v_key));
        END IF;
    END IF;
    RETURN fl_pos_post_unguarded(ctx, p);
END
$$;
