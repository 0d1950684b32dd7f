// Starts Swagger UI on the daemon's own OpenAPI document. Kept out of the page so the
// Content-Security-Policy can forbid inline scripts.
window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: "openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    // The default validator is an outside service: never call it.
    validatorUrl: null,
    // Keep the bearer token across reloads of this tab.
    persistAuthorization: true,
    tryItOutEnabled: true,
    displayRequestDuration: true,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
  });
});
