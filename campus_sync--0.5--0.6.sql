/* campus_sync--0.5--0.6.sql */

\echo Use "ALTER EXTENSION campus_sync UPDATE TO '0.6'" to load this file. \quit

-- What 0.6 changes in SQL objects (issue 11): see each section.  The
-- upgrade-chain test (test/integration/test_upgrade.py) proves that 0.1
-- updated through every script has the same catalog as a fresh 0.6.
-- Queued items are not touched.

------------------------------------------------------------------------------
-- Drift against CloudCard (0.6)
------------------------------------------------------------------------------

-- What differs between the body a row would send and the person as CloudCard
-- has it: a row per field (field '*' when CloudCard has no such person).
-- Read-only at the remote; USAGE on the server is checked inside, as by
-- cloudcard_person().  Called per row (a LATERAL join), its look-ups go one
-- after another: cloudcard_drift() looks up a whole query's rows at the
-- server's concurrency.
CREATE FUNCTION campus_sync.cloudcard_diff(person record, mapping jsonb DEFAULT NULL,
                                           server name DEFAULT 'cloudcard')
RETURNS TABLE (field text, local text, remote text)
AS 'MODULE_PATHNAME', 'campus_sync_cloudcard_diff'
LANGUAGE C VOLATILE ROWS 3;

-- cloudcard_diff() for every row of a query (run with the caller's
-- privileges), up to the server's concurrency look-ups at once, at its
-- max_rate; the rows come in no particular order.
CREATE FUNCTION campus_sync.cloudcard_drift(query text, mapping jsonb DEFAULT NULL,
                                            server name DEFAULT 'cloudcard')
RETURNS TABLE (person_key text, field text, local text, remote text)
AS 'MODULE_PATHNAME', 'campus_sync_cloudcard_drift'
LANGUAGE C VOLATILE;
