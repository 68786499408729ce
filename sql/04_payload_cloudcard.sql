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
-- the deprecated people API nests them under customFields
SELECT campus_sync.cloudcard_payload(c, server => 'cloudcard_people')::text FROM cards_snake c;
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
SELECT campus_sync.cloudcard_payload(x)::text FROM (SELECT E'a/b?c#d%e+f g"\\' AS identifier) x;

-- mapping: API names or snake_case names as keys
SELECT campus_sync.cloudcard_payload(x, '{"identifier": "sid", "cardholder_group_name": "grp", "ROLE_OFFICE": "is_office"}')::text
FROM (SELECT 'S1'::text AS sid, 'Faculty'::text AS grp, true AS is_office) x;
SELECT err($q$SELECT campus_sync.cloudcard_payload(x, '{"unique_id": "sid"}') FROM (SELECT 'S1'::text AS sid) x$q$);
