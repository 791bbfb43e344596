/*
 * Train a model set: k folds x seeds as parallel GPU tasks (the split is seeded, so each seed
 * partitions the cases anew), each case is predicted by the models that held it out, and
 * tune-threshold picks the ET threshold on those out-of-fold predictions. The tuned model folders are ready for segment mode (--model).
 */
include { TRAIN                         } from '../modules/local/train'
include { PREDICT as PREDICT_VALIDATION } from '../modules/local/predict'
include { TUNE_THRESHOLD                } from '../modules/local/tune_threshold'

workflow GLIOCASCADE_TRAIN {
    take:
    cases       // [meta, case folder in BraTS space with <id>_seg]
    references  // [meta, <id>_seg labels]

    main:
    seeds = params.seeds.toString().tokenize(',').collect { s -> s.trim().toInteger() }
    jobs = channel.of(0..(params.folds - 1))
        .combine(channel.fromList(seeds))
        .map { fold, seed -> [id: "model_fold${fold}_seed${seed}", fold: fold, folds: params.folds, seed: seed] }
    TRAIN(jobs.combine(cases.map { _meta, dir -> dir }.collect().map { dirs -> [dirs] }))

    // every case is predicted by the models that did not train on it (one per seed: the model of
    // the fold whose validation set holds it), an ensemble of out-of-fold models
    validation = TRAIN.out.model
        .flatMap { _meta, dir -> validationIds(dir).collect { id -> [id, dir] } }
        .groupTuple()
        .join(cases.map { case_meta, case_dir -> [case_meta.id, case_meta, case_dir] })
        .map { _id, dirs, case_meta, case_dir -> [case_meta, case_dir, dirs] }
    PREDICT_VALIDATION(validation)

    predictions = PREDICT_VALIDATION.out.pred.map { _meta, pred -> pred }.collect().ifEmpty([]).map { ps -> [ps] }
    ground_truth = references.map { _meta, seg -> seg }.collect().map { gs -> [gs] }
    TUNE_THRESHOLD(
        channel.value([id: 'out_of_fold']).combine(predictions).combine(ground_truth),
        TRAIN.out.model.map { _meta, dir -> dir }.collect()
    )

    emit:
    models = TUNE_THRESHOLD.out.models.map { _meta, dirs -> dirs }
}

// The validation case ids of a model folder's data split (model.json "split": {"train", "val"}).
def validationIds(model_dir) {
    def card = new groovy.json.JsonSlurper().parse(model_dir.resolve('model.json').toFile())
    def split = card.split ?: [:]
    def ids = split.val ?: []
    return ids.collect { x -> x.toString() }
}
