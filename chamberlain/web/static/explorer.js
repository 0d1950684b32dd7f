// Starts Swagger UI on the daemon's own OpenAPI document. Kept out of the page so the
// Content-Security-Policy can forbid inline scripts.
//
// The page runs this script before Swagger UI's bundle: the document is asked for
// at once, while the bundle is still downloading, and Swagger UI starts as soon as
// the page is parsed (DOMContentLoaded, which waits for the bundle) and the
// document is in. Waiting for the window's load event held Swagger UI back until
// every file of the page had loaded, and only then did it start fetching the
// document: the explorer stayed empty, then spun, for both waits in a row.
(function () {
  "use strict";

  var options = {
    dom_id: "#swagger-ui",
    deepLinking: true,
    // The default validator is an outside service: never call it.
    validatorUrl: null,
    // Keep the bearer token across reloads of this tab.
    persistAuthorization: true,
    tryItOutEnabled: true,
    displayRequestDuration: true,
    layout: "BaseLayout",
  };

  function start(source) {
    var config = Object.assign({ presets: [SwaggerUIBundle.presets.apis] }, options, source);
    window.ui = SwaggerUIBundle(config);
  }

  var parsed = new Promise(function (resolve) {
    if (document.readyState === "loading") {
      document.addEventListener("DOMContentLoaded", resolve, { once: true });
    } else {
      resolve();
    }
  });

  var documentLoaded = fetch("openapi.json", { headers: { Accept: "application/json" } })
    .then(function (response) {
      if (!response.ok) {
        throw new Error("openapi.json answered " + response.status);
      }
      return response.json();
    });

  Promise.all([parsed, documentLoaded]).then(
    function (ready) {
      start({ spec: ready[1] });
    },
    function () {
      // Swagger UI fetches it again itself and shows the reason it cannot.
      parsed.then(function () {
        start({ url: "openapi.json" });
      });
    }
  );
})();
