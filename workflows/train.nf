/*
 * Train a model set: k folds x seeds as parallel GPU tasks (the split is seeded, so each seed
 * partitions the cases anew), each case is predicted by the models that held it out, and
 * tune-threshold picks the ET threshold on those out-of-fold predictions. The tuned model folders
 * are ready for segment mode (--model). Training and tuning read each row's label convention and
 * brain mask from a samplesheet written here, as `gliocascade train --samplesheet` does.
 */
include { TRAIN                         } from '../modules/local/train'
include { PREDICT as PREDICT_VALIDATION } from '../modules/local/predict'
include { TUNE_THRESHOLD                } from '../modules/local/tune_threshold'

workflow GLIOCASCADE_TRAIN {
    take:
    cases       // [meta, t1, t1ce, t2, flair, brain mask or []] in BraTS space
    references  // [meta, seg labels]

    main:
    rows = cases.join(references).toSortedList { a, b -> a[0].id <=> b[0].id }
    training = rows.map { list -> trainingSet(list) }
    train_sheet = training.map { _files, sheet -> sheet }.collectFile(name: 'train_samplesheet.csv')
    reference_set = rows.map { list -> referenceSet(list) }
    reference_sheet = reference_set.map { _files, sheet -> sheet }.collectFile(name: 'references.csv')

    seeds = params.seeds.toString().tokenize(',').collect { s -> s.trim().toInteger() }
    // a built-in config by name; a JSON config file staged into every TRAIN task (config/<name>)
    def builtin = params.config.toString() in ['paper', 'tiny', 'small']
    def config_file = builtin ? [] : file(params.config.toString(), checkIfExists: true)
    def config_name = builtin ? params.config.toString() : "config/${config_file.name}"
    jobs = channel.of(0..(params.folds - 1))
        .combine(channel.fromList(seeds))
        .map { fold, seed -> [id: "model_fold${fold}_seed${seed}", fold: fold, folds: params.folds, seed: seed, config: config_name] }
    TRAIN(jobs.combine(training.map { files, _sheet -> [files] }).combine(train_sheet), config_file)

    // every case is predicted by the models that did not train on it (one per seed: the model of
    // the fold whose validation set holds it), an ensemble of out-of-fold models
    validation = TRAIN.out.model
        .flatMap { _meta, dir -> validationIds(dir).collect { id -> [id, dir] } }
        .groupTuple()
        .join(cases.map { case_meta, t1, t1ce, t2, flair, mask -> [case_meta.id, case_meta, t1, t1ce, t2, flair, mask] })
        .map { _id, dirs, case_meta, t1, t1ce, t2, flair, mask -> [case_meta, t1, t1ce, t2, flair, mask, dirs] }
    PREDICT_VALIDATION(validation)

    predictions = PREDICT_VALIDATION.out.pred.map { _meta, pred -> pred }.collect().ifEmpty([]).map { ps -> [ps] }
    TUNE_THRESHOLD(
        channel.value([id: 'out_of_fold']).combine(predictions).combine(reference_set.map { files, _sheet -> [files] }).combine(reference_sheet),
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

// Where the i-th staged file lies in a task that stages a list as 'DIR/f?????/*' (1-based index).
def stagedName(dir, index, file) {
    return "${dir}/f${String.format('%05d', index)}/${file.name}"
}

// [every file of the rows [meta, t1, t1ce, t2, flair, mask or [], seg], the samplesheet naming them
// as TRAIN stages them (data/fNNNNN/<name>)]; each row keeps its label convention and brain mask.
def trainingSet(rows) {
    def files = []
    def lines = ['case_id,t1,t1ce,t2,flair,seg,brainmask,space,label_convention']
    rows.each { meta, t1, t1ce, t2, flair, mask, seg ->
        def cells = [t1, t1ce, t2, flair, seg, mask].collect { f ->
            if (!f) {
                return ''
            }
            files << f
            return stagedName('data', files.size(), f)
        }
        lines << ([meta.id] + cells + ['brats', meta.label_convention]).join(',')
    }
    return [files, lines.join('\n') + '\n']
}

// [the rows' references, the CSV naming each as TUNE_THRESHOLD stages them (gt/fNNNNN/<name>) with
// the row's label convention].
def referenceSet(rows) {
    def files = []
    def lines = ['case_id,seg,label_convention']
    rows.each { meta, _t1, _t1ce, _t2, _flair, _mask, seg ->
        files << seg
        lines << [meta.id, stagedName('gt', files.size(), seg), meta.label_convention].join(',')
    }
    return [files, lines.join('\n') + '\n']
}
