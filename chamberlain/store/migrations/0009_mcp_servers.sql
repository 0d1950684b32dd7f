-- The MCP server registry (/mcp-servers).  Each server is kept as it was registered:
-- env and header values may hold ${secret:name} references, which stay references
-- here and are resolved only into a job's .mcp.json when it starts.  command, env
-- and headers are JSON (an array, objects); a url server has an empty command.
CREATE TABLE mcp_servers (
    name       TEXT PRIMARY KEY,
    command    TEXT NOT NULL,
    env        TEXT NOT NULL,
    url        TEXT,
    headers    TEXT NOT NULL,
    created_at REAL NOT NULL
);
-- The servers a job asked for (a JSON array of names); NULL for none.
ALTER TABLE jobs ADD COLUMN mcp_servers TEXT;
