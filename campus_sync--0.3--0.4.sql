/* campus_sync--0.3--0.4.sql */

\echo Use "ALTER EXTENSION campus_sync UPDATE TO '0.4'" to load this file. \quit

-- What 0.4 changes in SQL objects: check_server().  The upgrade-chain test
-- (test/integration/test_upgrade.py) proves that 0.1 updated through every
-- script has the same catalog as a fresh 0.4.  Queued items are not touched.

-- The first thing to run after CREATE SERVER: does the url answer, does TLS
-- verify, are the caller's credentials accepted?  Changes nothing remotely.
CREATE FUNCTION campus_sync.check_server(server name DEFAULT NULL)
RETURNS TABLE (server name, ok boolean, http_status integer, detail text, hint text)
AS 'MODULE_PATHNAME', 'campus_sync_check_server'
LANGUAGE C VOLATILE;
