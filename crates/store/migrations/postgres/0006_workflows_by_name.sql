-- A workflow's name is unique across namespaces (pods are keyed by name on one server):
-- the insert looks the name up in every namespace.
CREATE INDEX workflows_by_name ON workflows (name);
