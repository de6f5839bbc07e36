//! The enrolment QR code, drawn here as SVG so the page needs no script or CDN to show it.

use qrcode::render::svg;
use qrcode::{EcLevel, QrCode};

/// `data` (the `otpauth://` URI) as an SVG document, without an XML declaration so it can be
/// put inline in an HTML page as it is (it is also a valid `image/svg+xml` body). Black on white
/// with the 4-module quiet zone scanners need, at least 200 px wide. The same input always
/// gives the same output. The SVG shows the secret: serve it like the secret (`no-store`).
pub fn svg(data: &str) -> Result<String, String> {
    let code = QrCode::with_error_correction_level(data.as_bytes(), EcLevel::M)
        .map_err(|e| format!("cannot draw the QR code: {e}"))?;
    let image = code
        .render::<svg::Color>()
        .min_dimensions(200, 200)
        .quiet_zone(true)
        .dark_color(svg::Color("#000000"))
        .light_color(svg::Color("#ffffff"))
        .build();
    Ok(match image.find("<svg") {
        Some(start) => image[start..].to_owned(),
        None => image,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const URI: &str = "otpauth://totp/authbooks:alice?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\
                       &issuer=authbooks&algorithm=SHA1&digits=6&period=30";

    #[test]
    fn an_otpauth_uri_becomes_one_deterministic_svg() {
        let image = svg(URI).unwrap();
        assert!(
            image.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""),
            "{image}"
        );
        assert!(image.ends_with("</svg>"));
        assert!(!image.contains("<?xml"));
        assert!(!image.contains("<script"));
        assert_eq!(image, svg(URI).unwrap());
        assert_ne!(image, svg(&URI.replace("alice", "bob")).unwrap());
        // Width and height at least 200.
        let width: u32 = image
            .split("width=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .and_then(|w| w.parse().ok())
            .unwrap();
        assert!(width >= 200, "{width}");
    }

    #[test]
    fn too_much_data_is_an_error_not_a_panic() {
        assert!(svg(&"x".repeat(5000)).is_err());
    }
}
