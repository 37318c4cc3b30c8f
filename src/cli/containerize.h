// `edgeloop model containerize`: bakes a model package into the server image (docs/deploy.md), for
// sites that can only deploy container images.
//
// The result is the base image (scripts/build-image) plus one uncompressed tar layer holding the
// model's files at /models/<name>/<version>/ (root-owned, mode 0644, mtime 0, sorted), with the
// image config's Cmd set to `serve --model-repository /models` and labels naming the model. The
// same model and base give the same image digest.
#ifndef EDGELOOP_CLI_CONTAINERIZE_H_
#define EDGELOOP_CLI_CONTAINERIZE_H_

#include <string>

#include "common/status.h"
#include "registry/oci.h"
#include "registry/store.h"

namespace edgeloop::cli {

struct ContainerizeOptions {
  std::string model_ref;  // the model package (oci://... or layout://...)
  std::string base_ref;   // the base server image
  std::string image_ref;  // where the new image goes (its tag; "latest" when none)
  // The served name and version folder; default the package's. The version must be a positive
  // integer without leading zeros (the model repository's rule).
  std::string model_name;
  std::string model_version;
  registry::StoreOptions store;
};

struct ContainerizeResult {
  registry::Descriptor manifest;  // of the new image
  std::string model_name;
  std::string model_version;
  std::string model_digest;  // the package's manifest digest
  std::string image;         // the image reference written
};

// Pulls the model, builds its layer in a temporary folder, copies the base image's blobs to the
// target store when it is another store, and pushes the new config and manifest. Errors:
// kInvalidArgument for bad references, a base that is not an image, or a name/version that the
// model repository would refuse; kNotFound when the model or base is absent; store errors as
// they come. Not thread-safe with other writers of the same target tag.
StatusOr<ContainerizeResult> Containerize(const ContainerizeOptions& options);

}  // namespace edgeloop::cli

#endif  // EDGELOOP_CLI_CONTAINERIZE_H_
