//! The network page served by the control API at `GET /`: HTML, script and style from
//! `transport-tcp/web/`, compiled into the binary. It loads nothing from elsewhere (its
//! content security policy allows this daemon only) and polls `GET /v1/topology`.

/// One file of the page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Asset {
    /// `Content-Type` to serve it with.
    pub content_type: &'static str,
    /// Its text.
    pub body: &'static str,
}

/// What the page may load and run: from this daemon only, no inline script.
pub(crate) const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

/// The page's files by request path.
const ASSETS: [(&str, Asset); 3] = [
    (
        "/",
        Asset {
            content_type: "text/html; charset=utf-8",
            body: include_str!("../web/index.html"),
        },
    ),
    (
        "/app.js",
        Asset {
            content_type: "text/javascript; charset=utf-8",
            body: include_str!("../web/app.js"),
        },
    ),
    (
        "/style.css",
        Asset {
            content_type: "text/css; charset=utf-8",
            body: include_str!("../web/style.css"),
        },
    ),
];

/// The page's file at `path`, if any.
pub(crate) fn asset(path: &str) -> Option<Asset> {
    ASSETS
        .iter()
        .find(|(p, _)| *p == path)
        .map(|(_, asset)| *asset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_only_its_own_files() {
        let page = asset("/").unwrap().body;
        for (path, _) in &ASSETS[1..] {
            assert!(page.contains(&format!("\"{path}\"")), "{path} is linked");
        }
        for (_, a) in &ASSETS {
            // The SVG namespace is a name, not a download.
            let text = a.body.replace("\"http://www.w3.org/2000/svg\"", "");
            assert!(!text.contains("http://") && !text.contains("https://"));
            assert!(!a.body.contains("//cdn"), "nothing from elsewhere");
        }
        assert!(
            !page.contains("<script>"),
            "no inline script (the CSP forbids it)"
        );
        assert!(asset("/app.js").unwrap().body.contains("/v1/topology"));
        assert_eq!(asset("/nope"), None);
    }
}
