// Prints JSON Schemas as zod 4 writes them (z.toJSONSchema), for the schema corpus test.
// Usage: node zod_schemas.cjs <folder holding node_modules/zod>
const { createRequire } = require("module");
const path = require("path");
const z = createRequire(path.join(process.argv[2], "package.json"))("zod");

const schemas = {
  zod_issue: z.object({
    title: z.string().min(1).max(80),
    priority: z.number().int().min(1).max(5),
    labels: z.array(z.enum(["bug", "feature", "docs"])).max(3),
    assignee: z.string().email().optional(),
    link: z.string().url().nullable(),
  }),
  zod_union: z.object({
    shape: z.discriminatedUnion("kind", [
      z.object({ kind: z.literal("circle"), radius: z.number().positive() }),
      z.object({ kind: z.literal("square"), side: z.number().min(0) }),
    ]),
    id: z.string().uuid(),
    when: z.string().datetime(),
  }),
  zod_search: z.object({
    query: z.string().regex(/^[a-z ]+$/).max(30),
    limit: z.number().int().min(1).max(50).default(10),
    exact: z.boolean().optional(),
    tags: z.array(z.string().max(10)).max(4).optional(),
  }).strict(),
};
const out = {};
for (const [name, schema] of Object.entries(schemas)) out[name] = z.toJSONSchema(schema);
process.stdout.write(JSON.stringify(out));
