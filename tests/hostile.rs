//! A corpus of hostile and odd inputs, sent over every front end: /v1/detect, KServe REST
//! (the `dfserve` pipeline model and tensor models), KServe gRPC and the dfserve gRPC API.
//! Each gets its documented status, and a normal request right after still succeeds.

mod common;

use common::{encode, sample, Server};
use dfserve::api::grpc::pb::dfserve_v1::{detector_client::DetectorClient, DetectRequest};
use dfserve::api::grpc::pb::inference::{
    grpc_inference_service_client::GrpcInferenceServiceClient, model_infer_request::InferInputTensor, ModelInferRequest,
};
use image::{DynamicImage, ImageFormat, Rgb, RgbImage};
use tonic::Code;

/// (name, bytes, acceptable: true if dfserve should score it, false if it must refuse it).
fn corpus() -> Vec<(&'static str, Vec<u8>, bool)> {
    let photo = RgbImage::from_fn(64, 48, |x, y| Rgb([x as u8 * 4, y as u8 * 5, 90]));
    let jpeg = encode(&photo, ImageFormat::Jpeg);
    let png = encode(&photo, ImageFormat::Png);
    let webp = encode(&photo, ImageFormat::WebP);
    let gif = encode(&photo, ImageFormat::Gif);
    let mut bomb_png = encode(&RgbImage::new(1, 1), ImageFormat::Png);
    bomb_png[16..20].copy_from_slice(&50_000u32.to_be_bytes());
    bomb_png[20..24].copy_from_slice(&50_000u32.to_be_bytes());
    // A JPEG whose frame header claims 65,500 x 65,500 pixels.
    let mut bomb_jpeg = jpeg.clone();
    let sof = bomb_jpeg.windows(2).position(|w| w == [0xFF, 0xC0]).expect("baseline SOF0");
    bomb_jpeg[sof + 5..sof + 9].copy_from_slice(&[0xFF, 0xDC, 0xFF, 0xDC]);
    let cmyk = turbojpeg::compress(
        turbojpeg::Image {
            pixels: &vec![40u8; 32 * 32 * 4][..],
            width: 32,
            pitch: 32 * 4,
            height: 32,
            format: turbojpeg::PixelFormat::CMYK,
        },
        90,
        turbojpeg::Subsamp::None,
    )
    .expect("CMYK JPEG")
    .to_vec();
    let grey16 = {
        let img = DynamicImage::ImageLuma16(image::ImageBuffer::from_fn(40, 30, |x, _| image::Luma([x as u16 * 1000])));
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, ImageFormat::Png).unwrap();
        out.into_inner()
    };
    let rgba = {
        let img = DynamicImage::ImageRgba8(image::RgbaImage::from_pixel(30, 30, image::Rgba([200, 10, 10, 0])));
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, ImageFormat::Png).unwrap();
        out.into_inner()
    };
    let animated = {
        let mut out = Vec::new();
        {
            let mut enc = image::codecs::gif::GifEncoder::new(&mut out);
            for i in 0..3u8 {
                let f = image::RgbaImage::from_pixel(20, 20, image::Rgba([i * 80, 0, 0, 255]));
                enc.encode_frame(image::Frame::new(f)).unwrap();
            }
        }
        out
    };
    vec![
        ("truncated JPEG", jpeg[..jpeg.len() / 2].to_vec(), false),
        (
            "corrupt JPEG scan",
            {
                let mut j = jpeg.clone();
                let n = j.len();
                j[n / 2..n - 2].fill(0xFF);
                j
            },
            false,
        ),
        ("truncated PNG", png[..png.len() / 2].to_vec(), false),
        ("truncated WebP", webp[..webp.len() / 2].to_vec(), false),
        ("truncated GIF", gif[..20].to_vec(), false),
        ("PNG declaring 50000x50000", bomb_png, false),
        ("JPEG declaring 65500x65500", bomb_jpeg, false),
        ("text posing as an image", b"GIF89a? no, just text".to_vec(), false),
        ("1x1 PNG", encode(&RgbImage::new(1, 1), ImageFormat::Png), true),
        ("1x5000 PNG", encode(&RgbImage::new(1, 5000), ImageFormat::Png), true),
        ("5000x1 JPEG", encode(&RgbImage::new(5000, 1), ImageFormat::Jpeg), true),
        ("16-bit greyscale PNG", grey16, true),
        ("transparent RGBA PNG", rgba, true),
        ("CMYK JPEG", cmyk, true),
        ("animated GIF", animated, true),
        ("WebP", webp, true),
    ]
}

#[tokio::test]
async fn hostile_images_over_every_front_end() {
    let s = Server::start(&["--max-image-pixels", "30000000"]).await;
    let mut detector = DetectorClient::connect(s.grpc.clone()).await.unwrap();
    let mut kserve = GrpcInferenceServiceClient::connect(s.grpc.clone()).await.unwrap();
    let good = sample("mesonet/df/df00204.jpg");
    for (name, bytes, acceptable) in corpus() {
        // /v1/detect, raw body with an image content type whatever the bytes are.
        let r = s
            .client
            .post(s.url("/v1/detect"))
            .header("content-type", "image/jpeg")
            .body(bytes.clone())
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let body: serde_json::Value = r.json().await.unwrap_or_else(|e| panic!("{name}: non-JSON body: {e}"));
        if acceptable {
            assert_eq!(status, 200, "{name}: {body}");
            assert!(matches!(body["results"][0]["status"].as_str(), Some("ok" | "no_face")), "{name}: {body}");
        } else {
            assert_eq!(status, 422, "{name}: {body}");
            assert!(!body["error"].as_str().unwrap().is_empty());
        }
        // KServe REST pipeline model with the bytes as a BYTES tensor.
        let mut raw = (bytes.len() as u32).to_le_bytes().to_vec();
        raw.extend_from_slice(&bytes);
        let head = format!(
            r#"{{"inputs":[{{"name":"IMAGE","shape":[1],"datatype":"BYTES","parameters":{{"binary_data_size":{}}}}}]}}"#,
            raw.len()
        );
        let mut body = head.clone().into_bytes();
        body.extend_from_slice(&raw);
        let r = s
            .client
            .post(s.url("/v2/models/dfserve/infer"))
            .header("inference-header-content-length", head.len())
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), if acceptable { 200 } else { 422 }, "{name} over /v2");
        // KServe gRPC, same tensor.
        let req = ModelInferRequest {
            model_name: "dfserve".into(),
            inputs: vec![InferInputTensor {
                name: "IMAGE".into(),
                datatype: "BYTES".into(),
                shape: vec![1],
                ..Default::default()
            }],
            raw_input_contents: vec![raw.into()],
            ..Default::default()
        };
        let code = kserve.model_infer(req).await.map(|_| Code::Ok).unwrap_or_else(|e| e.code());
        assert_eq!(code, if acceptable { Code::Ok } else { Code::InvalidArgument }, "{name} over KServe gRPC");
        // dfserve gRPC.
        let code = detector
            .detect(DetectRequest { image: bytes.into(), ..Default::default() })
            .await
            .map(|_| Code::Ok)
            .unwrap_or_else(|e| e.code());
        assert_eq!(code, if acceptable { Code::Ok } else { Code::InvalidArgument }, "{name} over dfserve gRPC");
        // And the server is still fine.
        let (ok, _) = s.detect("?mode=whole", good.clone()).await;
        assert_eq!(ok, 200, "after {name}");
    }
}

#[tokio::test]
async fn hostile_requests_and_tensors() {
    let s = Server::start(&[]).await;
    let good = sample("mesonet/df/df00204.jpg");
    let post = |path: &str| s.client.post(s.url(path));
    let cases: Vec<(&str, reqwest::RequestBuilder, u16)> = vec![
        ("empty body", post("/v1/detect"), 400),
        (
            "multipart with a wrong boundary",
            post("/v1/detect").header("content-type", "multipart/form-data; boundary=AAA").body("--BBB\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nxx\r\n--BBB--\r\n"),
            400,
        ),
        ("multipart without a boundary", post("/v1/detect").header("content-type", "multipart/form-data").body("x"), 400),
        ("JSON shape vs data length", post("/v2/models/meso4_df/infer").body(r#"{"inputs":[{"name":"input","shape":[1,256,256,3],"datatype":"FP32","data":[1,2,3]}]}"#), 400),
        ("JSON wrong datatype", post("/v2/models/meso4_df/infer").body(r#"{"inputs":[{"name":"input","shape":[1],"datatype":"INT8","data":[1]}]}"#), 400),
        ("JSON string in FP32 data", post("/v2/models/meso4_df/infer").body(r#"{"inputs":[{"name":"input","shape":[1,1],"datatype":"FP32","data":["x"]}]}"#), 400),
        ("JSON negative shape", post("/v2/models/meso4_df/infer").body(r#"{"inputs":[{"name":"input","shape":[-1,256,256,3],"datatype":"FP32","data":[]}]}"#), 400),
        ("JSON not JSON", post("/v2/models/meso4_df/infer").body("{{{{"), 400),
        (
            "binary header longer than the body",
            post("/v2/models/meso4_df/infer").header("inference-header-content-length", "999999").body("{}"),
            400,
        ),
        (
            "binary size that lies",
            post("/v2/models/dfserve/infer").header("inference-header-content-length", "88").body(format!(
                "{:<88}{}",
                r#"{"inputs":[{"name":"IMAGE","shape":[1],"datatype":"BYTES","parameters":{"binary_data_size":5000}}]}"#,
                "abcd"
            )),
            400,
        ),
        ("unknown model", post("/v2/models/nope/infer").body("{}"), 404),
        ("unknown version", post("/v2/models/meso4_df/versions/9/infer").body(r#"{"inputs":[]}"#), 404),
    ];
    for (name, req, want) in cases {
        let r = req.send().await.unwrap();
        assert_eq!(r.status().as_u16(), want, "{name}");
        let body: serde_json::Value = r.json().await.unwrap_or_else(|e| panic!("{name}: non-JSON body: {e}"));
        assert!(body["error"].as_str().is_some_and(|m| !m.is_empty()), "{name}: {body}");
        let (ok, _) = s.detect("?mode=whole", good.clone()).await;
        assert_eq!(ok, 200, "after {name}");
    }
    // BYTES with a bad length prefix, over gRPC.
    let mut kserve = GrpcInferenceServiceClient::connect(s.grpc.clone()).await.unwrap();
    for raw in [vec![0xFF, 0xFF, 0xFF, 0x7F, 1, 2, 3], vec![1, 0]] {
        let req = ModelInferRequest {
            model_name: "dfserve".into(),
            inputs: vec![InferInputTensor {
                name: "IMAGE".into(),
                datatype: "BYTES".into(),
                shape: vec![1],
                ..Default::default()
            }],
            raw_input_contents: vec![raw.into()],
            ..Default::default()
        };
        assert_eq!(kserve.model_infer(req).await.unwrap_err().code(), Code::InvalidArgument);
    }
    let (ok, _) = s.detect("?mode=whole", good).await;
    assert_eq!(ok, 200);
}
