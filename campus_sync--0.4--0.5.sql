/* campus_sync--0.4--0.5.sql */

\echo Use "ALTER EXTENSION campus_sync UPDATE TO '0.5'" to load this file. \quit

-- What 0.5 changes in SQL objects: the key a server's items are keyed by
-- comes from the library's service descriptors (server_key_field()), not
-- from a CASE over the two services 0.4 knew: a webhook server is keyed by
-- its key_field.  The upgrade-chain test (test/integration/test_upgrade.py)
-- proves that 0.1 updated through every script has the same catalog as a
-- fresh 0.5.  Queued items are not touched.

-- The field a server's items are keyed by, by its service's own rule (the
-- library's service descriptors: one source, whatever services it has).
CREATE FUNCTION campus_sync.server_key_field(server oid)
RETURNS text
AS 'MODULE_PATHNAME', 'campus_sync_server_key_field'
LANGUAGE C STABLE STRICT;

CREATE OR REPLACE VIEW campus_sync.server_bindings AS
SELECT s.oid, s.srvname::text AS name, o.service,
       campus_sync.server_key_field(s.oid) AS key_field
FROM pg_catalog.pg_foreign_server s
JOIN pg_catalog.pg_foreign_data_wrapper w ON w.oid = s.srvfdw AND w.fdwname = 'campus_sync'
CROSS JOIN LATERAL (
  SELECT max(t.option_value) FILTER (WHERE t.option_name = 'service') AS service
  FROM pg_catalog.pg_options_to_table(s.srvoptions) t) o;
