-- A workflow's name is unique per namespace only (pods are keyed by namespace and name now):
-- the look-up by name across namespaces is gone, and its index with it.
DROP INDEX workflows_by_name;
