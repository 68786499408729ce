/* campus_sync--0.1.sql */

\echo Use "CREATE EXTENSION campus_sync" to load this file. \quit

-- The schema is campus_sync (see the control file).  Functions that check
-- USAGE on the server themselves are executable by PUBLIC; the rest, the
-- queue and its views are not (they hold personal data).
GRANT USAGE ON SCHEMA campus_sync TO PUBLIC;

------------------------------------------------------------------------------
-- Targets: foreign servers of the campus_sync wrapper
------------------------------------------------------------------------------

CREATE FUNCTION campus_sync.fdw_validator(text[], oid)
RETURNS void
AS 'MODULE_PATHNAME', 'campus_sync_fdw_validator'
LANGUAGE C STRICT;

REVOKE ALL ON FUNCTION campus_sync.fdw_validator(text[], oid) FROM PUBLIC;

CREATE FOREIGN DATA WRAPPER campus_sync VALIDATOR campus_sync.fdw_validator;

COMMENT ON FOREIGN DATA WRAPPER campus_sync IS
  'campus_sync targets: servers carry the options, user mappings the secrets';

------------------------------------------------------------------------------
-- Synchronous functions
------------------------------------------------------------------------------

CREATE TYPE campus_sync.push_result AS (
  ok          boolean,
  http_status integer,
  remote_id   text,
  response    jsonb,
  error       text,
  elapsed_ms  double precision
);

CREATE FUNCTION campus_sync.opscom_payload(person record, mapping jsonb DEFAULT NULL,
                                           server name DEFAULT 'opscom',
                                           options jsonb DEFAULT NULL)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'campus_sync_opscom_payload'
LANGUAGE C STABLE PARALLEL SAFE;

CREATE FUNCTION campus_sync.cloudcard_payload(person record, mapping jsonb DEFAULT NULL,
                                              server name DEFAULT 'cloudcard',
                                              options jsonb DEFAULT NULL)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'campus_sync_cloudcard_payload'
LANGUAGE C STABLE PARALLEL SAFE;

CREATE FUNCTION campus_sync.opscom_push(person record, mapping jsonb DEFAULT NULL,
                                        server name DEFAULT 'opscom',
                                        options jsonb DEFAULT NULL)
RETURNS campus_sync.push_result
AS 'MODULE_PATHNAME', 'campus_sync_opscom_push'
LANGUAGE C VOLATILE;

CREATE FUNCTION campus_sync.cloudcard_upsert(person record, mapping jsonb DEFAULT NULL,
                                             server name DEFAULT 'cloudcard',
                                             options jsonb DEFAULT NULL)
RETURNS campus_sync.push_result
AS 'MODULE_PATHNAME', 'campus_sync_cloudcard_upsert'
LANGUAGE C VOLATILE;

CREATE FUNCTION campus_sync.cloudcard_login_link(person record, mapping jsonb DEFAULT NULL,
                                                 server name DEFAULT 'cloudcard')
RETURNS text
AS 'MODULE_PATHNAME', 'campus_sync_cloudcard_login_link'
LANGUAGE C VOLATILE;

CREATE FUNCTION campus_sync.opscom_user_types(server name DEFAULT 'opscom')
RETURNS TABLE (id text, type_name text, ext_info text)
AS 'MODULE_PATHNAME', 'campus_sync_opscom_user_types'
LANGUAGE C VOLATILE ROWS 20;

CREATE FUNCTION campus_sync.cloudcard_person(key text, server name DEFAULT 'cloudcard')
RETURNS jsonb
AS 'MODULE_PATHNAME', 'campus_sync_cloudcard_person'
LANGUAGE C VOLATILE;
