-- 003_setup_import.sql - the bulk import of a hotel's set-up from one JSON document.
--
-- api_setup_import(ctx, doc) upserts properties with their rooms, transaction codes (and their
-- rules) and outlets, then users, by natural key, through the same fl_*_save() functions as the
-- single-object methods (mode 'upsert'). Importing the same document twice changes nothing the
-- second time. Nothing absent from the document is deleted. The document shape is in
-- docs/schema.md; etc/demo-hotel.json is an example.
--
-- Applied once by the migrate command inside one transaction; never edited once landed.

-- Counts one imported object of a kind: {"<kind>": n, "created": {...}, "updated": {...}}.
CREATE FUNCTION fl_import_tally(t jsonb, kind text, action text) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN action IN ('created', 'updated')
                THEN jsonb_set(t1, ARRAY[action, kind], to_jsonb((t1 -> action ->> kind)::int + 1))
                ELSE t1 END
      FROM (SELECT jsonb_set(t, ARRAY[kind], to_jsonb((t ->> kind)::int + 1))) AS x(t1)
$$;

-- The members of a nested list (rooms, trx_codes, outlets) as objects scoped to property code.
CREATE FUNCTION fl_import_items(parent jsonb, k text, path text, v_code text)
RETURNS TABLE (item jsonb, item_path text)
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    e jsonb;
    i integer := 0;
BEGIN
    FOR e IN SELECT value FROM jsonb_array_elements(coalesce(fl_p_array(parent, k, path, false),
                                                             '[]'::jsonb)) LOOP
        item_path := format('%s%s[%s].', path, k, i);
        i := i + 1;
        item := fl_params(e, item_path);
        IF v_code IS NOT NULL THEN
            -- a nested object belongs to the property it is listed under
            item := item || jsonb_build_object('property', v_code);
        END IF;
        RETURN NEXT;
    END LOOP;
END
$$;

CREATE FUNCTION api_setup_import(ctx jsonb, doc jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    zero constant jsonb := '{"properties": 0, "rooms": 0, "trx_codes": 0, "outlets": 0,
                             "users": 0}';
    tally jsonb := zero || jsonb_build_object('created', zero, 'updated', zero);
    pr record;
    it record;
    res jsonb;
    action text;
    v_code text;
    actions jsonb;
BEGIN
    -- two imports at once would race on the same natural keys
    PERFORM pg_advisory_xact_lock(hashtext('foliod.setup_import'));
    doc := fl_params(doc, '');
    PERFORM fl_check_keys(doc, ARRAY['properties', 'users', 'comment'], '');
    PERFORM fl_p_text(doc, 'comment', '', false, 10000);
    ctx := coalesce(ctx, '{}'::jsonb) || '{"via": "setup.import"}';

    FOR pr IN SELECT * FROM fl_import_items(doc, 'properties', '', NULL) LOOP
        res := fl_property_save(ctx, pr.item - ARRAY['rooms', 'trx_codes', 'outlets'], 'upsert',
                                pr.item_path);
        tally := fl_import_tally(tally, 'properties', res ->> 'action');
        v_code := res -> 'item' ->> 'code';

        FOR it IN SELECT * FROM fl_import_items(pr.item, 'rooms', pr.item_path, v_code) LOOP
            res := fl_room_save(ctx, it.item, 'upsert', it.item_path);
            tally := fl_import_tally(tally, 'rooms', res ->> 'action');
        END LOOP;

        -- transaction codes in two passes, the codes and then their rules, so that a charge
        -- code may name a tax or service code listed after it
        actions := '{}';
        FOR it IN SELECT * FROM fl_import_items(pr.item, 'trx_codes', pr.item_path, v_code) LOOP
            res := fl_trx_code_save(ctx, it.item - 'rules', 'upsert', it.item_path);
            actions := actions || jsonb_build_object(it.item_path, res ->> 'action');
        END LOOP;
        FOR it IN SELECT * FROM fl_import_items(pr.item, 'trx_codes', pr.item_path, v_code) LOOP
            action := actions ->> it.item_path;
            IF it.item ? 'rules' THEN
                res := fl_trx_code_save(ctx, jsonb_build_object('property', v_code,
                                                                'code', it.item -> 'code',
                                                                'rules', it.item -> 'rules'),
                                        'upsert', it.item_path);
                IF action = 'unchanged' THEN
                    action := res ->> 'action';
                END IF;
            END IF;
            tally := fl_import_tally(tally, 'trx_codes', action);
        END LOOP;

        -- outlets last: their policy names transaction codes
        FOR it IN SELECT * FROM fl_import_items(pr.item, 'outlets', pr.item_path, v_code) LOOP
            res := fl_outlet_save(ctx, it.item, 'upsert', it.item_path);
            tally := fl_import_tally(tally, 'outlets', res ->> 'action');
        END LOOP;
    END LOOP;

    FOR it IN SELECT * FROM fl_import_items(doc, 'users', '', NULL) LOOP
        res := fl_user_save(ctx, it.item, 'upsert', it.item_path);
        tally := fl_import_tally(tally, 'users', res ->> 'action');
    END LOOP;

    RETURN tally;
END
$$;
