"""Tiny random models built from configs (2 layers, hidden 32), saved as local folders: the same code path a
user takes with a hub id or a folder, in milliseconds."""

from __future__ import annotations

import csv
import random
from pathlib import Path

import pytest
import torch

WORDS = (
    "good great fun loved wonderful superb bad awful boring hated terrible dull movie film plot actors "
    "the a an is was it this and but not very story review sentiment positive negative question answer "
    "who what where when how many city person number location"
).split()


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory) -> Path:
    from transformers import BertConfig, BertModel, BertTokenizerFast

    path = tmp_path_factory.mktemp("tiny-bert")
    vocab = [
        "[PAD]",
        "[UNK]",
        "[CLS]",
        "[SEP]",
        "[MASK]",
        *WORDS,
        *list("abcdefghijklmnopqrstuvwxyz"),
        ":",
        ".",
        "!",
    ]
    tokenizer = BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)})
    assert tokenizer.tokenize("good movie") == ["good", "movie"]
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        architectures=["BertModel"],
    )
    BertModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory) -> Path:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    path = tmp_path_factory.mktemp("tiny-llama")
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<pad>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    rng = random.Random(0)
    corpus = [" ".join(rng.choices(WORDS, k=12)) for _ in range(300)]
    bpe.train_from_iterator(corpus, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe, bos_token="<s>", eos_token="</s>", pad_token="<pad>"
    )
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=bpe.get_vocab_size(),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        architectures=["LlamaForCausalLM"],
    )
    LlamaForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def shipped_example(name: str, task: str):
    """An example config under examples/ (its data paths made absolute) and the pools it loads."""
    from taskfit.config import load_config
    from taskfit.tasks import load_pools

    root = Path(__file__).parent.parent
    config = load_config(root / "examples" / name)
    data = config.data.model_copy(
        update={k: str(root / getattr(config.data, k)) for k in ("train", "dev", "test")}
    )
    return config, data, load_pools(data, task)


def write_csv(path: Path, rows: list[dict]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture
def sentiment_csv(tmp_path) -> Path:
    """A separable toy sentiment set: positive texts use positive words, negative ones negative words."""
    rng = random.Random(1)
    pos, neg, filler = WORDS[0:6], WORDS[6:12], WORDS[12:22]
    rows = []
    for i in range(60):
        label = "positive" if i % 2 == 0 else "negative"
        words = rng.sample(pos if label == "positive" else neg, 2) + rng.sample(filler, 4)
        rng.shuffle(words)
        rows.append({"text": " ".join(words) + f" {i}", "label": label})
    return write_csv(tmp_path / "train.csv", rows)


@pytest.fixture
def pairs_csv(tmp_path):
    """Input: three words; target: the same words reversed (learnable, and checkable by eye)."""
    rng = random.Random(0)
    rows = []
    for _ in range(90):
        words = rng.sample(WORDS[:14], 3)
        rows.append({"text": " ".join(words), "target": " ".join(reversed(words))})
    return write_csv(tmp_path / "pairs.csv", rows)


# ---------------------------------------------------------------------------------------------------
# Test kinds. `make test-fast` (-m "not integration and not slow") is the minute-long loop while editing;
# `make test` and CI run everything. `integration`: the packaged real models/data (marked in its files).
# `slow`: runs grid processes, a server, a browser, subprocesses or many training steps — each took over
# ~2 s on the 2-core machine under load (pytest --durations=0). Listed here by test function name so that
# the list is one place to read and to edit.
SLOW = {
    "test_parallel_trials_on_ray_choose_what_the_sequential_search_chooses",
    "test_the_executor_puts_back_the_signal_handlers_ray_init_replaces",
    "test_compare_a_csv_without_config_then_rerun_its_config",
    "test_readme_commands_run_on_tiny_data",
    "test_readme_few_labels_section_runs_as_written",
    "test_forty_labels_without_dev_or_test_end_to_end_then_served",
    "test_sigkill_at_a_random_step_then_resume_matches_an_uninterrupted_run",
    "test_sigkill_midway_then_rerun_finishes_without_redoing_cells",
    "test_ray_grid_on_a_head_and_a_worker_node_matches_the_local_executor",
    "test_a_killed_cell_worker_is_retried_and_nothing_is_redone_or_lost",
    "test_a_killed_ray_driver_resumes_without_redoing_finished_cells",
    "test_naive_forgets_the_first_task",
    "test_prompt_finetune_learns_through_the_verbalizer",
    "test_two_gloo_processes_match_one_process_with_the_same_global_batch",
    "test_contrastive_pairs_and_training",
    "test_run_writes_every_cell_and_a_table",
    "test_head_finetune_learns_and_reloads_identically",
    "test_resume_of_a_peft_strategy",
    "test_head_finetune_learns_toy_tags_and_reloads",
    "test_peoples_daily_builtin_has_fixed_disjoint_splits",
    "test_mlflow_logs_to_a_local_store_in_the_tracking_folder",
    "test_a_crashing_cell_fails_alone_and_the_report_shows_it",
    "test_onnx_matches_the_run_for_head_finetune_and_lora",
    "test_a_signal_checkpoints_then_resume_ends_like_an_uninterrupted_run",
    "test_a_damaged_or_half_written_checkpoint_falls_back_to_the_previous_one",
    "test_ctrl_c_stops_an_in_process_grid_and_resume_finishes_it",
    "test_compare_grid_ner_and_server_answers_entities_with_offsets",
    "test_bf16_autocast_trains_and_keeps_fp32_weights",
    "test_compare_runs_relation_end_to_end_and_predict_answers_marked_text",
    "test_what_cannot_be_merged_says_why_and_the_alternatives_work",
    "test_resume_with_gradient_accumulation_in_generation_sft",
    "test_cli_run_then_predict",
    "test_tensorboard_logs_each_epoch_into_the_tracking_folder",
    "test_update_reports_old_and_new_before_and_after",
    "test_head_finetune_same_seed_same_result",
    "test_report_embeds_the_plots",
    "test_grid_cells_are_nested_in_k_and_skipped_when_finished",
    "test_generation_strategies_end_to_end",
    "test_lora_adapter_interoperates_with_plain_peft",
    "test_report_renders_with_visible_plots_and_no_console_errors",
    "test_a_causal_lm_becomes_a_classifier_on_its_last_token",
    "test_a_cell_augments_only_its_training_sample_and_writes_augmented_jsonl",
    "test_a_failing_cell_is_reported_and_the_rest_finish",
    "test_classifier_service_predicts_and_rejects_bad_requests",
    "test_compare_runs_extractive_qa_end_to_end_and_predict_answers",
    "test_head_finetune_freezing_keeps_weights_bit_identical",
    "test_parameter_efficient_taggers_train_only_their_part_and_reload",
    "test_save_then_load_gives_identical_predictions",
    "test_search_tunes_on_dev_only_and_records_the_choice",
    "test_the_step_accumulates_clean_plus_adversarial_gradients_and_leaves_the_embeddings_alone",
    "test_trains_only_what_it_should_and_reloads_identically",
    "test_no_request_gets_a_500_and_every_4xx_has_the_json_error_body",
    "test_the_time_limit_starts_after_the_warm_up_and_errors_are_counted_apart",
    "test_imbalanced_data_ranks_by_macro_f1_and_never_recommends_the_majority_answer",
    "test_the_final_model_trains_on_train_plus_dev_and_predict_uses_it",
    "test_cv_selection_fits_the_folds_then_all_of_train_plus_dev",
    "test_a_tiny_grid_reports_its_ensemble_rows",
    "test_a_cross_validated_grid_fits_the_weights_on_out_of_fold_predictions",
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if getattr(item, "originalname", item.name) in SLOW:
            item.add_marker(pytest.mark.slow)
