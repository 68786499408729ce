-- From a row to the CloudCard body.

-- camelCase columns (quoted) and their snake_case forms; booleans as JSON booleans.
CREATE TABLE cards_camel (email text, identifier text, "cardholderGroupName" text,
  "additionalPhotoRequired" boolean, enabled boolean, "managerEmail" text,
  "managerIdentifier" text, role_cardholder boolean, role_office boolean, role_director boolean);
INSERT INTO cards_camel VALUES ('jon.doe@foo.edu', 'ABC123', 'Online Students', true, false,
  'boss@foo.edu', 'M1', true, false, NULL);
SELECT campus_sync.cloudcard_payload(c)::text FROM cards_camel c;

CREATE TABLE cards_snake (identifier text, email text, cardholder_group_name text,
  additional_photo_required text, manager_email text, manager_identifier text,
  custom_fields jsonb, class_year int);
INSERT INTO cards_snake VALUES ('A1234567', 'a@foo.edu', 'Staff', 'yes', NULL, NULL,
  '{"Batch": "1", "Upload Date": "2017-06-22", "Score": 12.5, "Active": true, "Gone": null}', 2027);
SELECT campus_sync.cloudcard_payload(c)::text FROM cards_snake c;

-- custom fields by mapping: {"customFields": {"Field name": "column"}}, added to the json column's
SELECT campus_sync.cloudcard_payload(c, '{"customFields": {"Class Year": "class_year", "Batch": "identifier"}}')::text
FROM cards_snake c;
-- one form of the body whatever the api (custom fields nested; the update lifts them
-- to the top level as it is sent): the deprecated people API's server gives the same
SELECT campus_sync.cloudcard_payload(c, server => 'cloudcard_people') = campus_sync.cloudcard_payload(c)
  AS same_body FROM cards_snake c;
-- a json (not jsonb) column works too; custom_fields can be renamed or dropped by the mapping
SELECT campus_sync.cloudcard_payload(x, '{"customFields": "extra"}')::text
FROM (SELECT 'i1'::text AS identifier, '{"Dorm": "West"}'::json AS extra) x;
SELECT campus_sync.cloudcard_payload(c, '{"custom_fields": null}')::text FROM cards_snake c;

-- bad custom fields
SELECT err($q$SELECT campus_sync.cloudcard_payload(x) FROM (SELECT 'i2'::text AS identifier, '[1,2]'::jsonb AS custom_fields) x$q$);
SELECT err($q$SELECT campus_sync.cloudcard_payload(x) FROM (SELECT 'i3'::text AS identifier, '{"Nested": {"a": 1}}'::jsonb AS custom_fields) x$q$);
SELECT err($q$SELECT campus_sync.cloudcard_payload(x) FROM (SELECT 'i4'::text AS identifier, '{"email": "x"}'::jsonb AS custom_fields) x$q$);
SELECT err($q$SELECT campus_sync.cloudcard_payload(x) FROM (SELECT 'i5'::text AS identifier, 'text'::text AS custom_fields) x$q$);
SELECT err($q$SELECT campus_sync.cloudcard_payload(c, '{"customFields": {"enabled": "class_year"}}') FROM cards_snake c$q$);
SELECT err($q$SELECT campus_sync.cloudcard_payload(c, '{"customFields": {"Class Year": "no_such_col"}}') FROM cards_snake c$q$);
-- customFields must be an object, in the mapping (a configuration error)...
SELECT err($q$SELECT campus_sync.cloudcard_payload(c, '{"customFields": []}') FROM cards_snake c$q$);
SELECT err($q$SELECT campus_sync.cloudcard_payload(c, '{"custom_fields": [["Class Year", "class_year"]]}') FROM cards_snake c$q$);
SELECT err($q$SELECT campus_sync.cloudcard_payload(c, '{"customFields": true}') FROM cards_snake c$q$);
-- ... and in the column (a problem of the row), json or jsonb
SELECT err($q$SELECT campus_sync.cloudcard_payload(x) FROM (SELECT 'i12'::text AS identifier, '"2027"'::json AS custom_fields) x$q$);
SELECT err($q$SELECT campus_sync.cloudcard_payload(x) FROM (SELECT 'i13'::text AS identifier, '42'::jsonb AS custom_fields) x$q$);
SELECT err($q$SELECT campus_sync.cloudcard_payload(x) FROM (SELECT 'i14'::text AS identifier, 'null'::jsonb AS custom_fields) x$q$);
SELECT campus_sync.cloudcard_payload(x)::text FROM (SELECT 'i15'::text AS identifier, NULL::jsonb AS custom_fields) x;
-- a json value jsonb cannot hold (\u0000, a lone surrogate): a problem of the
-- row, reported like the others, not an error of the statement
SELECT err($q$SELECT campus_sync.cloudcard_payload(x) FROM (SELECT 'i20'::text AS identifier, '{"Dorm": "a\u0000b"}'::json AS custom_fields) x$q$);
SELECT err($q$SELECT campus_sync.cloudcard_payload(x) FROM (SELECT 'i21'::text AS identifier, '{"Dorm": "\ud800"}'::json AS custom_fields) x$q$);
-- ... while an escaped backslash before u0000 is just text
SELECT campus_sync.cloudcard_payload(x)::text FROM (SELECT 'i22'::text AS identifier, '{"Dorm": "a\\u0000b \u00e9\ud83d\ude00"}'::json AS custom_fields) x;
-- names an update could not carry as top-level keys: roles, read-only
-- attributes of the person, the empty name
SELECT err($q$SELECT campus_sync.cloudcard_payload(x) FROM (SELECT 'i16'::text AS identifier, '{"ROLE_ADMIN": "yes"}'::jsonb AS custom_fields) x$q$);
SELECT err($q$SELECT campus_sync.cloudcard_payload(x) FROM (SELECT 'i17'::text AS identifier, '{"id": "7"}'::jsonb AS custom_fields) x$q$);
SELECT err($q$SELECT campus_sync.cloudcard_payload(x) FROM (SELECT 'i18'::text AS identifier, '{"": "x"}'::jsonb AS custom_fields) x$q$);
SELECT err($q$SELECT campus_sync.cloudcard_payload(c, '{"customFields": {"username": "class_year"}}') FROM cards_snake c$q$);
-- other case is another name
SELECT campus_sync.cloudcard_payload(x)::text FROM (SELECT 'i19'::text AS identifier, '{"Email": "e", "Id": "7", "role_x": "r"}'::jsonb AS custom_fields) x;

-- booleans: from boolean or text columns; anything else is refused
SELECT campus_sync.cloudcard_payload(x)::text FROM (SELECT 'i6'::text AS identifier, 'f'::text AS enabled, 'TRUE'::text AS role_office) x;
SELECT err($q$SELECT campus_sync.cloudcard_payload(x) FROM (SELECT 'i7'::text AS identifier, 'maybe'::text AS enabled) x$q$);
SELECT err($q$SELECT campus_sync.cloudcard_payload(x) FROM (SELECT 'i8'::text AS identifier, 1 AS enabled) x$q$);

-- the key: identifier for find_by identifier (the default), email for find_by email
SELECT err($q$SELECT campus_sync.cloudcard_payload(x) FROM (SELECT 'only@foo.edu'::text AS email) x$q$);
SELECT campus_sync.cloudcard_payload(x, server => 'cloudcard_static')::text FROM (SELECT 'only@foo.edu'::text AS email) x;
SELECT err($q$SELECT campus_sync.cloudcard_payload(x, server => 'cloudcard_static') FROM (SELECT 'ID9'::text AS identifier) x$q$);
SELECT campus_sync.cloudcard_payload(x, options => '{"find_by": "email"}')::text FROM (SELECT 'only@foo.edu'::text AS email) x;

-- emails are checked, identifiers are sent as they are (escaping is the URL's business)
SELECT err($q$SELECT campus_sync.cloudcard_payload(x) FROM (SELECT 'i9'::text AS identifier, 'jon.doe@foo'::text AS email) x$q$);
SELECT err($q$SELECT campus_sync.cloudcard_payload(x) FROM (SELECT 'i10'::text AS identifier, 'boss at foo.edu'::text AS manager_email) x$q$);
-- an invisible blank (here a no-break space) is no email either
SELECT err($q$SELECT campus_sync.cloudcard_payload(x) FROM (SELECT 'i10'::text AS identifier, E'jon\u00a0doe@foo.edu'::text AS email) x$q$);
SELECT campus_sync.cloudcard_payload(x)::text FROM (SELECT E'a?b#c%d+e f;g"\\' AS identifier) x;

-- ... except keys that the URL path /person/{key} would misread: ".", ".."
-- (dot segments) and any "/" (refused by CloudCard even as %2F): 22P02
SELECT err($q$SELECT campus_sync.cloudcard_payload(x) FROM (SELECT '..'::text AS identifier) x$q$);
SELECT err($q$SELECT campus_sync.cloudcard_payload(x) FROM (SELECT '.'::text AS identifier) x$q$);
SELECT err($q$SELECT campus_sync.cloudcard_payload(x) FROM (SELECT 'a/b?c#d%e+f g'::text AS identifier) x$q$);
SELECT err($q$SELECT campus_sync.cloudcard_payload(x, '{"identifier": "sid"}') FROM (SELECT '/'::text AS sid) x$q$);
-- with find_by email the email is the key; also with the people API (the
-- look-ups put the key in the path, and the server's api may change)
SELECT err($q$SELECT campus_sync.cloudcard_payload(x, server => 'cloudcard_static') FROM (SELECT 'a/b@foo.edu'::text AS email) x$q$);
SELECT err($q$SELECT campus_sync.cloudcard_payload(x, server => 'cloudcard_people') FROM (SELECT '..'::text AS identifier) x$q$);
-- CloudCard publishes no limit, but a key must fit the URL path and the
-- queue's index: 255 characters at most (22001)
SELECT length(campus_sync.cloudcard_payload(x) ->> 'identifier')
FROM (SELECT repeat(U&'\+01F600', 255) AS identifier) x;
SELECT err($q$SELECT campus_sync.cloudcard_payload(x) FROM (SELECT repeat('x', 256) AS identifier) x$q$);
-- dots are fine inside a key, and anything goes in a field that is not the key
SELECT campus_sync.cloudcard_payload(x)::text FROM (SELECT '...'::text AS identifier, '..'::text AS manager_identifier) x;
SELECT campus_sync.cloudcard_payload(x, server => 'cloudcard_static')::text
FROM (SELECT 'jon.doe@foo.edu'::text AS email, 'a/b'::text AS identifier) x;

-- NaN and infinities are refused wherever a number is sent (22P02): as a key,
-- in a custom field; other numbers are sent as text (numeric as written,
-- floats as the shortest exact decimal)
SELECT err($q$SELECT campus_sync.cloudcard_payload(x) FROM (SELECT 'NaN'::numeric AS identifier) x$q$);
SELECT err($q$SELECT campus_sync.cloudcard_payload(x) FROM (SELECT '-Infinity'::float8 AS identifier) x$q$);
SELECT err($q$SELECT campus_sync.cloudcard_payload(x, '{"customFields": {"Score": "score"}}') FROM (SELECT 'i11'::text AS identifier, 'Infinity'::real AS score) x$q$);
SELECT campus_sync.cloudcard_payload(x, '{"customFields": {"Score": "score", "Ratio": "ratio"}}')::text
FROM (SELECT 12::bigint AS identifier, 2.50::numeric AS score, 0.1::float8 * 3 AS ratio) x;

-- mapping: API names or snake_case names as keys
SELECT campus_sync.cloudcard_payload(x, '{"identifier": "sid", "cardholder_group_name": "grp", "ROLE_OFFICE": "is_office"}')::text
FROM (SELECT 'S1'::text AS sid, 'Faculty'::text AS grp, true AS is_office) x;
SELECT err($q$SELECT campus_sync.cloudcard_payload(x, '{"unique_id": "sid"}') FROM (SELECT 'S1'::text AS sid) x$q$);
