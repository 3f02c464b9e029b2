//! The cross-encoder path against the reference: tiny random BertForSequenceClassification and
//! XLMRobertaForSequenceClassification models in the real Hugging Face layout
//! (tests/fixtures/tiny-rerankers, made by scripts/fixtures/make_tiny_cross_encoders.py), launched
//! as rerank models through the in-process Client, must give the scores that
//! sentence-transformers' CrossEncoder (what Xinference runs) recorded, within 1e-4.

mod common;

use common::tiny_reranker;
use xinference::protocol::rerank::RerankRequest;
use xinference::{Client, LaunchRequest, ModelType, Runtime, RuntimeConfig};

fn floats(v: &serde_json::Value) -> Vec<f32> {
    v.as_array()
        .expect("an array of numbers")
        .iter()
        .map(|x| x.as_f64().expect("a number") as f32)
        .collect()
}

async fn check(kind: &str, family: &str) {
    let (dir, reference) = tiny_reranker(kind);
    let home = tempfile::tempdir().unwrap();
    let client = Client::local(std::sync::Arc::new(
        Runtime::new(RuntimeConfig::new(home.path())).unwrap(),
    ));
    let uid = client
        .launch_model(
            LaunchRequest::new(family)
                .model_type(ModelType::Rerank)
                .model_uid(format!("tiny-{kind}"))
                .model_path(dir.display().to_string()),
        )
        .await
        .unwrap();
    let model = client.get_model(&uid).await.unwrap().into_rerank().unwrap();
    for set in reference["sets"].as_array().unwrap() {
        let query = set["query"].as_str().unwrap();
        let documents: Vec<&str> = set["documents"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_str().unwrap())
            .collect();
        let mut request = RerankRequest::new(query, documents.clone());
        request.return_len = Some(true);
        let response = model.rerank(request).await.unwrap();
        let expected = floats(&set["scores"]);
        assert_eq!(response.results.len(), expected.len());
        let mut got = vec![f32::NAN; expected.len()];
        for r in &response.results {
            got[r.index] = r.relevance_score as f32;
            assert!(
                r.document.is_none(),
                "documents are not returned by default"
            );
        }
        for (i, (e, g)) in expected.iter().zip(&got).enumerate() {
            assert!(
                (e - g).abs() < 1e-4,
                "{kind} {query:?} doc {i}: reference {e}, ours {g}"
            );
        }
        // Most relevant first.
        let scores: Vec<f64> = response.results.iter().map(|r| r.relevance_score).collect();
        assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
        // Token counts are the real (truncated) input lengths.
        let tokens = response.meta.tokens.expect("return_len gives tokens");
        assert_eq!(
            tokens.input_tokens as u64,
            set["tokens"].as_u64().unwrap(),
            "{kind} {query:?}"
        );
        assert_eq!(tokens.output_tokens, tokens.input_tokens);

        if let Some(n) = set["max_chunks_per_doc"].as_u64() {
            let mut request = RerankRequest::new(query, documents.clone());
            request.max_chunks_per_doc = Some(n as i64);
            let response = model.rerank(request).await.unwrap();
            let expected = floats(&set["chunked_scores"]);
            for r in &response.results {
                let e = expected[r.index];
                assert!(
                    (e - r.relevance_score as f32).abs() < 1e-4,
                    "{kind} chunked doc {}: reference {e}, ours {}",
                    r.index,
                    r.relevance_score
                );
            }
            // The long document is split, and its best chunk is not the truncated one.
            let chunk_ids = set["chunk_input_ids"][0].as_array().unwrap();
            assert!(chunk_ids.len() > 1);
        }
    }
    // Batches pad: one document alone scores as inside the batch.
    let set = &reference["sets"][0];
    let query = set["query"].as_str().unwrap();
    let doc = set["documents"][3].as_str().unwrap();
    let alone = model
        .rerank(RerankRequest::new(query, [doc]))
        .await
        .unwrap();
    let e = floats(&set["scores"])[3];
    assert!((alone.results[0].relevance_score as f32 - e).abs() < 1e-4);
    client.terminate_model(&uid).await.unwrap();
}

#[tokio::test]
async fn bert_cross_encoder_matches_sentence_transformers() {
    check("bert", "ms-marco-MiniLM-L-6-v2").await;
}

#[tokio::test]
async fn xlm_roberta_cross_encoder_matches_sentence_transformers() {
    check("xlmr", "bge-reranker-base").await;
}
