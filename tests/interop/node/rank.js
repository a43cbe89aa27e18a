// Calls shoprank's Rank from Node.js with @grpc/grpc-js and @grpc/proto-loader,
// from the contract `shoprank proto --out DIR` writes.
//
//   node rank.js HOST:PORT PROTO_DIR < requests.json > results.json
//
// requests.json is a list of RankRequest objects (proto field names). Each
// result is {"pages": [...]} or {"error": {"code": "INVALID_ARGUMENT", "details": "..."}},
// in the request's order; every page and item field is written out, so the
// caller can hold them against another client's, field for field.
"use strict";

const fs = require("fs");
const path = require("path");
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");

const [address, protoDir] = process.argv.slice(2);
if (!address || !protoDir) {
  console.error("usage: node rank.js HOST:PORT PROTO_DIR < requests.json");
  process.exit(2);
}

const definition = protoLoader.loadSync(path.join(protoDir, "shoprank/v1/ranking.proto"), {
  keepCase: true, // the proto's own field names, as Python sees them
  longs: String,
  enums: String, // flags by name: COLD_START_USER, ...
  defaults: true, // zeros written out, so a missing field and a zero look alike
  includeDirs: [protoDir],
});
const { Ranker } = grpc.loadPackageDefinition(definition).shoprank.v1;
const client = new Ranker(address, grpc.credentials.createInsecure());

function item(it) {
  return {
    item_id: it.item_id,
    rank: it.rank,
    score: it.score,
    parts: it.parts === null ? null : { ...it.parts, flags: [...it.parts.flags] },
  };
}

function rank(request) {
  return new Promise((resolve) => {
    const pages = [];
    let settled = false;
    const call = client.Rank(request, { deadline: Date.now() + 30000 });
    call.on("data", (page) => pages.push({ model_version: page.model_version, items: page.items.map(item) }));
    call.on("error", (error) => {
      settled = true;
      resolve({ error: { code: grpc.status[error.code], details: error.details } });
    });
    call.on("end", () => {
      if (!settled) resolve({ pages });
    });
  });
}

async function main() {
  const requests = JSON.parse(fs.readFileSync(0, "utf8"));
  const results = [];
  for (const request of requests) results.push(await rank(request));
  process.stdout.write(JSON.stringify(results));
  client.close();
}

main().catch((error) => {
  console.error(`rank.js: ${error.message}`);
  process.exit(1);
});
