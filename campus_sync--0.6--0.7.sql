/* campus_sync--0.6--0.7.sql */

\echo Use "ALTER EXTENSION campus_sync UPDATE TO '0.7'" to load this file. \quit

-- What 0.7 changes in SQL objects (issue 12): the library writes the
-- delivered-state memory with a statement of its own, prepared once per
-- backend, run as the table's owner.  remember_delivered(), a SQL function
-- that it called once a batch, was planned again at every call (0.15 ms,
-- as much as a fifth of a worker's batch commit).  Queued items and the
-- memory are not touched.

DROP FUNCTION campus_sync.remember_delivered(oid, text[], bytea[], text[], timestamptz);
