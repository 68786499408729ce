/* campus_sync--0.5--0.6.sql */

\echo Use "ALTER EXTENSION campus_sync UPDATE TO '0.6'" to load this file. \quit

-- What 0.6 changes in SQL objects (issue 11): see each section.  The
-- upgrade-chain test (test/integration/test_upgrade.py) proves that 0.1
-- updated through every script has the same catalog as a fresh 0.6.
-- Queued items are not touched.
