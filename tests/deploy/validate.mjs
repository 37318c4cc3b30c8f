// Validates Kubernetes objects offline against the OpenAPI schemas of the `kubernetes-models`
// package: reads a JSON array of objects on stdin, prints one line per object and exits 1 when
// any object is invalid or of an unknown kind. Used by tests/blackbox/test_deploy_artifacts.py.
import fs from "node:fs";

const objects = JSON.parse(fs.readFileSync(0, "utf8"));
let failures = 0;
for (const obj of objects) {
  const name = `${obj.kind}/${obj.metadata && obj.metadata.name}`;
  // "apps/v1" -> kubernetes-models/apps/v1; the core group "v1" -> kubernetes-models/v1.
  let Model;
  try {
    Model = (await import(`kubernetes-models/${obj.apiVersion}`))[obj.kind];
  } catch (e) {
    Model = undefined;
  }
  if (typeof Model !== "function") {
    console.log(`FAIL ${name}: no schema for ${obj.apiVersion} ${obj.kind}`);
    failures++;
    continue;
  }
  try {
    new Model(obj).validate();
    console.log(`ok   ${name}`);
  } catch (e) {
    console.log(`FAIL ${name}: ${e.message}`);
    failures++;
  }
}
process.exit(failures === 0 ? 0 : 1);
