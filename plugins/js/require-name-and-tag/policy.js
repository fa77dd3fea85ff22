// Requires the label `app.kubernetes.io/name` on every object it is given, and refuses images
// that float: tagged `:latest`, or with no tag at all (which means `:latest`). An image pinned
// by digest (`name@sha256:...`) is always accepted.
//
// Images are read from pods and the pod templates of workloads (Deployment, ReplicaSet,
// StatefulSet, DaemonSet, Job, CronJob, PodTemplate), in every container list.
//
// Settings: none (`{}`); anything else is refused, so a typo cannot go unnoticed.
//
// Built with componentize-js into a component of the `wkube:admission` `policy` world (see
// plugins/js/build.mjs). The world's exports are this module's exported functions; records are
// plain objects with camelCase fields, options are `undefined` when none.

const NAME_LABEL = "app.kubernetes.io/name";

// Where the pod spec sits, by kind; kinds not listed carry no images.
const POD_SPEC_PATHS = {
  Pod: ["spec"],
  PodTemplate: ["template", "spec"],
  Deployment: ["spec", "template", "spec"],
  ReplicaSet: ["spec", "template", "spec"],
  ReplicationController: ["spec", "template", "spec"],
  StatefulSet: ["spec", "template", "spec"],
  DaemonSet: ["spec", "template", "spec"],
  Job: ["spec", "template", "spec"],
  CronJob: ["spec", "jobTemplate", "spec", "template", "spec"],
};

const CONTAINER_LISTS = ["initContainers", "containers", "ephemeralContainers"];

function answer(allowed, message) {
  return { allowed, message, code: undefined, warnings: [], patch: undefined };
}

// Why the settings are wrong, or null when they are fine.
function settingsError(text) {
  let settings;
  try {
    settings = JSON.parse(text || "{}");
  } catch (e) {
    return `settings are not JSON: ${e.message}`;
  }
  if (settings === null || typeof settings !== "object" || Array.isArray(settings)) {
    return "settings must be an object";
  }
  const keys = Object.keys(settings);
  return keys.length ? `this policy takes no settings (got: ${keys.join(", ")})` : null;
}

// The tag of an image reference, "" when it has none, null when it is pinned by digest.
// The tag is after the last ":" of the last path segment, so a registry port
// (`127.0.0.1:5000/app`) is not mistaken for one.
function tagOf(image) {
  if (image.includes("@")) return null;
  const last = image.slice(image.lastIndexOf("/") + 1);
  const colon = last.lastIndexOf(":");
  return colon < 0 ? "" : last.slice(colon + 1);
}

function imageProblems(object) {
  let spec = object;
  for (const key of POD_SPEC_PATHS[object.kind] || []) spec = spec?.[key];
  if (!spec || spec === object) return [];
  const problems = [];
  for (const list of CONTAINER_LISTS) {
    for (const c of spec[list] || []) {
      const image = c.image || "";
      const tag = tagOf(image);
      if (tag === "") {
        problems.push(`container "${c.name}": image ${image} has no tag (it would run :latest)`);
      } else if (tag === "latest") {
        problems.push(`container "${c.name}": image ${image} uses the :latest tag`);
      }
    }
  }
  return problems;
}

export function validate(settings, request) {
  // Labels and images of an object on its way out do not matter.
  if (request.operation === "delete" || request.object === undefined) return answer(true);
  const err = settingsError(settings);
  if (err) return answer(false, err);
  const object = JSON.parse(request.object);
  const problems = [];
  if (object.metadata?.labels?.[NAME_LABEL] === undefined) {
    problems.push(`missing required label ${NAME_LABEL}`);
  }
  const images = imageProblems(object);
  if (images.length) {
    problems.push(`${images.join("; ")} (pin images to a version tag or a digest)`);
  }
  return problems.length ? answer(false, problems.join("; ")) : answer(true);
}

export function mutate(_settings, _request) {
  return answer(true);
}

// A thrown value is the `err` of the `result<_, string>`.
export function validateSettings(settings) {
  const err = settingsError(settings);
  if (err) throw err;
}
