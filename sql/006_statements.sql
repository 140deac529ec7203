-- 006_statements.sql - folio.statement: a folio as plain text or as an HTML page a guest can be
-- handed (hotel, folio number, guest, room, dates, every posting with its date, description
-- and amount, generated taxes and service as their own lines, payments, totals, balance).
--
-- Amounts are formatted by fl_money (004) with integer arithmetic only, in the property's minor
-- units. Every text that reaches the HTML page goes through fl_html.
--
-- Applied once by the migrate command inside one transaction; never edited once landed.

CREATE FUNCTION fl_html(v text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT replace(replace(replace(replace(replace(coalesce(v, ''), '&', '&amp;'), '<', '&lt;'),
                                   '>', '&gt;'), '"', '&quot;'), '''', '&#39;')
$$;

-- The header facts of a statement.
CREATE FUNCTION fl_statement_head(f folios) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'hotel', pr.name, 'property', pr.code, 'currency', pr.currency,
        'minor_units', pr.minor_units, 'business_date', pr.business_date,
        'printed', to_char(now() AT TIME ZONE pr.timezone, 'YYYY-MM-DD HH24:MI'),
        'timezone', pr.timezone,
        'number', f.number, 'type', f.type, 'status', f.status, 'window', f.window_no,
        'account', CASE WHEN f.stay_id IS NOT NULL THEN g.first_name || ' ' || g.last_name
                        WHEN f.type = 'master' THEN gr.name || ' (group ' || gr.code || ')'
                        ELSE f.name END,
        'folio_name', f.name,
        'room', r.number, 'stay', s.number,
        'arrival', coalesce(s.arrival, gr.arrival),
        'departure', coalesce(s.departure, gr.departure),
        'balance', f.balance)
      FROM properties pr
      LEFT JOIN stays s ON s.id = f.stay_id
      LEFT JOIN guests g ON g.id = s.guest_id
      LEFT JOIN rooms r ON r.id = s.room_id
      LEFT JOIN groups gr ON gr.id = f.group_id
     WHERE pr.id = f.property_id
$$;

-- The lines of a statement, in posting order: generated lines (taxes, service) are indented
-- under their charge; voids, adjustments, transfers and routed charges say what they are.
CREATE FUNCTION fl_statement_lines(v_folio_id bigint)
RETURNS TABLE (id bigint, business_date date, code text, kind text, type text,
               description text, quantity integer, amount bigint, generated boolean)
LANGUAGE sql STABLE AS $$
    SELECT p.id, p.business_date, c.code, c.kind, p.type,
           CASE p.type
               WHEN 'void' THEN 'Void: ' || p.description
               WHEN 'adjustment' THEN CASE WHEN p.description LIKE 'Adjustment:%'
                                           THEN p.description
                                           ELSE 'Adjustment: ' || p.description END
               ELSE p.description END
           || CASE WHEN p.reference IS NOT NULL AND p.parent_id IS NULL
                   THEN ' [' || p.reference || ']' ELSE '' END
           || CASE WHEN p.transfer_of IS NULL OR p.parent_id IS NOT NULL THEN ''
                   WHEN p.type = 'transfer_out' THEN ' (moved to ' || tf.number || ')'
                   ELSE ' (moved from ' || ff.number || ')' END
           || CASE WHEN p.routed_from_folio_id IS NOT NULL AND p.parent_id IS NULL
                   THEN ' (' || coalesce('room ' || rr.number || ', ', '')
                        || coalesce(rg.last_name, rf.number) || ')'
                   ELSE '' END,
           p.quantity, p.amount, p.parent_id IS NOT NULL
      FROM postings p
      JOIN trx_codes c ON c.id = p.trx_code_id
      LEFT JOIN transfers t ON t.id = p.transfer_id
      LEFT JOIN folios tf ON tf.id = t.to_folio_id
      LEFT JOIN folios ff ON ff.id = t.from_folio_id
      LEFT JOIN folios rf ON rf.id = p.routed_from_folio_id
      LEFT JOIN stays rs ON rs.id = rf.stay_id
      LEFT JOIN rooms rr ON rr.id = rs.room_id
      LEFT JOIN guests rg ON rg.id = rs.guest_id
     WHERE p.folio_id = v_folio_id
     ORDER BY p.id
$$;

-- The tax and service totals of a folio, by code (what the statement lists as "taxes").
CREATE FUNCTION fl_statement_taxes(v_folio_id bigint)
RETURNS TABLE (code text, description text, amount bigint)
LANGUAGE sql STABLE AS $$
    SELECT c.code, c.description, sum(p.amount)::bigint
      FROM postings p JOIN trx_codes c ON c.id = p.trx_code_id
     WHERE p.folio_id = v_folio_id AND c.kind IN ('tax', 'service')
     GROUP BY c.code, c.description
    HAVING sum(p.amount) <> 0
     ORDER BY c.code
$$;

CREATE FUNCTION fl_statement_text(f folios) RETURNS text
LANGUAGE plpgsql STABLE AS $$
DECLARE
    h jsonb := fl_statement_head(f);
    mu integer := (h ->> 'minor_units')::integer;
    cur text := h ->> 'currency';
    out text := '';
    l record;
    charges bigint := 0;
    credits bigint := 0;
    rule text := repeat('-', 78);
BEGIN
    out := out || (h ->> 'hotel') || E'\n' || 'FOLIO STATEMENT ' || (h ->> 'number')
           || CASE WHEN f.window_no IS NOT NULL THEN ' (window ' || f.window_no || ')' ELSE '' END
           || E'\n' || rule || E'\n';
    out := out || rpad('Guest/account:', 16) || coalesce(h ->> 'account', '') || E'\n';
    IF h ->> 'room' IS NOT NULL THEN
        out := out || rpad('Room:', 16) || (h ->> 'room') || '    Stay: ' || (h ->> 'stay')
               || E'\n';
    END IF;
    IF h ->> 'arrival' IS NOT NULL THEN
        out := out || rpad('Arrival:', 16) || (h ->> 'arrival') || '    Departure: '
               || (h ->> 'departure') || E'\n';
    END IF;
    out := out || rpad('Folio:', 16) || replace(f.type, '_', '-') || ', ' || f.status
           || '    Currency: ' || cur || E'\n';
    out := out || rpad('Printed:', 16) || (h ->> 'printed') || ' (' || (h ->> 'timezone')
           || '), business date ' || (h ->> 'business_date') || E'\n' || rule || E'\n';
    out := out || rpad('Date', 12) || rpad('Description', 46) || lpad('Qty', 4)
           || lpad('Amount', 16) || E'\n' || rule || E'\n';
    FOR l IN SELECT * FROM fl_statement_lines(f.id) LOOP
        out := out || rpad(l.business_date::text, 12)
               || rpad(left(CASE WHEN l.generated THEN '  ' ELSE '' END || l.description, 45), 46)
               || lpad(CASE WHEN l.quantity > 1 THEN l.quantity::text ELSE '' END, 4)
               || lpad(fl_money(l.amount, mu), 16) || E'\n';
        IF l.amount > 0 THEN
            charges := charges + l.amount;
        ELSE
            credits := credits + l.amount;
        END IF;
    END LOOP;
    out := out || rule || E'\n';
    out := out || lpad('Charges', 62) || lpad(fl_money(charges, mu), 16) || E'\n';
    out := out || lpad('Payments and credits', 62) || lpad(fl_money(credits, mu), 16) || E'\n';
    out := out || lpad('Balance ' || cur, 62) || lpad(fl_money(f.balance, mu), 16) || E'\n';
    IF EXISTS (SELECT 1 FROM fl_statement_taxes(f.id)) THEN
        out := out || E'\nTaxes and service charges included above:\n';
        FOR l IN SELECT * FROM fl_statement_taxes(f.id) LOOP
            out := out || '  ' || rpad(l.code, 10) || rpad(left(l.description, 48), 50)
                   || lpad(fl_money(l.amount, mu), 16) || E'\n';
        END LOOP;
    END IF;
    RETURN out;
END
$$;

CREATE FUNCTION fl_statement_html(f folios) RETURNS text
LANGUAGE plpgsql STABLE AS $$
DECLARE
    h jsonb := fl_statement_head(f);
    mu integer := (h ->> 'minor_units')::integer;
    cur text := fl_html(h ->> 'currency');
    rows text := '';
    taxes text := '';
    l record;
    charges bigint := 0;
    credits bigint := 0;
    facts text := '';
BEGIN
    facts := '<tr><th>Guest / account</th><td>' || fl_html(h ->> 'account') || '</td></tr>';
    IF h ->> 'room' IS NOT NULL THEN
        facts := facts || '<tr><th>Room</th><td>' || fl_html(h ->> 'room') || '</td></tr>'
                 || '<tr><th>Stay</th><td>' || fl_html(h ->> 'stay') || '</td></tr>';
    END IF;
    IF h ->> 'arrival' IS NOT NULL THEN
        facts := facts || '<tr><th>Arrival</th><td>' || fl_html(h ->> 'arrival') || '</td></tr>'
                 || '<tr><th>Departure</th><td>' || fl_html(h ->> 'departure') || '</td></tr>';
    END IF;
    facts := facts || '<tr><th>Folio</th><td>' || fl_html(h ->> 'number')
             || CASE WHEN f.window_no IS NOT NULL THEN ' (window ' || f.window_no || ')' ELSE '' END
             || ', ' || fl_html(replace(f.type, '_', '-')) || ', ' || fl_html(f.status)
             || '</td></tr>'
             || '<tr><th>Printed</th><td>' || fl_html(h ->> 'printed') || ' ('
             || fl_html(h ->> 'timezone') || '), business date '
             || fl_html(h ->> 'business_date') || '</td></tr>';
    FOR l IN SELECT * FROM fl_statement_lines(f.id) LOOP
        rows := rows || '<tr class="' || CASE WHEN l.generated THEN 'gen' ELSE 'main' END
                || ' ' || fl_html(l.type) || '"><td>' || fl_html(l.business_date::text)
                || '</td><td>' || fl_html(l.description) || '</td><td class="n">'
                || CASE WHEN l.quantity > 1 THEN l.quantity::text ELSE '' END
                || '</td><td class="n">' || fl_html(fl_money(l.amount, mu)) || '</td></tr>'
                || E'\n';
        IF l.amount > 0 THEN
            charges := charges + l.amount;
        ELSE
            credits := credits + l.amount;
        END IF;
    END LOOP;
    FOR l IN SELECT * FROM fl_statement_taxes(f.id) LOOP
        taxes := taxes || '<tr><td>' || fl_html(l.code) || '</td><td>' || fl_html(l.description)
                 || '</td><td class="n">' || fl_html(fl_money(l.amount, mu)) || '</td></tr>'
                 || E'\n';
    END LOOP;
    RETURN '<!DOCTYPE html>' || E'\n'
        || '<html lang="en"><head><meta charset="utf-8">' || E'\n'
        || '<title>' || fl_html(h ->> 'hotel') || ' - folio ' || fl_html(h ->> 'number')
        || '</title>' || E'\n'
        || '<style>body{font-family:sans-serif;margin:2em;color:#111}'
        || 'h1{font-size:1.4em;margin:0}h2{font-size:1.1em;font-weight:normal;margin:.2em 0 1em}'
        || 'table{border-collapse:collapse}th,td{padding:.2em .6em;text-align:left}'
        || 'table.facts th{font-weight:normal;color:#555}'
        || 'table.lines{width:100%;margin-top:1em}'
        || 'table.lines thead th{border-bottom:1px solid #111}'
        || 'td.n,th.n{text-align:right;white-space:nowrap}tr.gen td{color:#555}'
        || 'tr.gen td:nth-child(2){padding-left:2em}'
        || 'tfoot td{border-top:1px solid #111}tfoot tr.balance td{font-weight:bold}'
        || 'table.taxes{margin-top:1em}</style></head>' || E'\n'
        || '<body>' || E'\n'
        || '<h1>' || fl_html(h ->> 'hotel') || '</h1>' || E'\n'
        || '<h2>Folio statement ' || fl_html(h ->> 'number') || '</h2>' || E'\n'
        || '<table class="facts">' || facts || '</table>' || E'\n'
        || '<table class="lines"><thead><tr><th>Date</th><th>Description</th>'
        || '<th class="n">Qty</th><th class="n">Amount (' || cur || ')</th></tr></thead>' || E'\n'
        || '<tbody>' || E'\n' || rows || '</tbody>' || E'\n'
        || '<tfoot><tr><td></td><td>Charges</td><td></td><td class="n">'
        || fl_html(fl_money(charges, mu)) || '</td></tr>'
        || '<tr><td></td><td>Payments and credits</td><td></td><td class="n">'
        || fl_html(fl_money(credits, mu)) || '</td></tr>'
        || '<tr class="balance"><td></td><td>Balance</td><td></td><td class="n">'
        || fl_html(fl_money(f.balance, mu)) || ' ' || cur || '</td></tr></tfoot></table>' || E'\n'
        || CASE WHEN taxes <> ''
                THEN '<table class="taxes"><caption>Taxes and service charges included above'
                     || '</caption><tbody>' || taxes || '</tbody></table>' || E'\n'
                ELSE '' END
        || '</body></html>' || E'\n';
END
$$;

CREATE FUNCTION api_folio_statement(ctx jsonb, p jsonb) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
    f folios;
    v_format text;
BEGIN
    p := fl_params(p);
    PERFORM fl_check_keys(p, ARRAY['folio_id', 'format'], '');
    f := fl_folio_find(ctx, fl_p_id(p, 'folio_id', '', true));
    v_format := coalesce(fl_p_enum(p, 'format', '', false, ARRAY['text', 'html']), 'text');
    RETURN jsonb_build_object(
        'folio_id', f.id, 'number', f.number, 'format', v_format, 'balance', f.balance,
        'content', CASE v_format WHEN 'html' THEN fl_statement_html(f)
                                 ELSE fl_statement_text(f) END);
END
$$;
