/*
 * Segment cases already in BraTS space: predict -> postprocess (BraTS and native space) ->
 * evaluate (metrics with ground truth, volumes without) -> cohort report. A case that a step
 * refuses stops there and is listed in the report with its reason.
 */
include { PREDICT     } from '../modules/local/predict'
include { POSTPROCESS } from '../modules/local/postprocess'
include { EVALUATE    } from '../modules/local/evaluate'
include { REPORT      } from '../modules/local/report'

workflow GLIOCASCADE_SEGMENT {
    take:
    cases       // [meta, t1, t1ce, t2, flair, brain mask or []]
    transforms  // [meta, transforms folder or [] ]
    references  // [meta, ground-truth labels or [] ]
    models      // value: list of model folders (an ensemble)
    refused     // [meta, refusal.csv] of cases refused before segmentation (convert, preprocess)
    records     // [meta, role, file] made before segmentation (provenance_preprocess, native_t1ce)

    main:
    PREDICT(cases.combine(models.map { ms -> [ms] }))
    POSTPROCESS(PREDICT.out.pred.join(transforms), models)
    // evaluate gets both label maps and compares the one on the reference's grid (native or BraTS)
    labels = POSTPROCESS.out.seg
        .join(POSTPROCESS.out.seg_native, remainder: true)
        .filter { _meta, seg, _seg_native -> seg != null }
        .map { meta, seg, seg_native -> [meta, seg, seg_native ?: []] }
    EVALUATE(labels.join(references))

    failures = refused
        .mix(PREDICT.out.refusal, POSTPROCESS.out.refusal, EVALUATE.out.refusal)
        .map { _meta, record -> record }
        .collectFile(name: 'failures.csv', keepHeader: true, skip: 1, sort: true)
        .ifEmpty([])

    // the files of each reported case's page, by role (as `gliocascade run` finds them in its OUT/<id>/)
    reported = EVALUATE.out.metrics.map { meta, _csv -> [meta.id] }
    pages = records
        .mix(
            cases.flatMap { meta, t1, t1ce, t2, flair, mask ->
                [[meta, 't1', t1], [meta, 't1ce', t1ce], [meta, 't2', t2], [meta, 'flair', flair], [meta, 'brainmask', mask]]
            },
            references.map { meta, ref -> [meta, 'reference', ref] },
            PREDICT.out.provenance.map { meta, f -> [meta, 'provenance_predict', f] },
            POSTPROCESS.out.seg.map { meta, f -> [meta, 'seg', f] },
            POSTPROCESS.out.seg_native.map { meta, f -> [meta, 'seg_native', f] },
            POSTPROCESS.out.provenance.map { meta, f -> [meta, 'provenance_postprocess', f] },
            EVALUATE.out.provenance.map { meta, f -> [meta, 'provenance_evaluate', f] }
        )
        .filter { _meta, _role, f -> f }
        .map { meta, role, f -> [meta.id, role, f] }
        .combine(reported, by: 0)
        .toSortedList { a, b -> a[0] <=> b[0] ?: a[1] <=> b[1] }
        .map { rows -> caseFilesSet(rows) }
    case_sheet = pages.map { _files, sheet -> sheet }.collectFile(name: 'case_files.csv')
    REPORT(
        EVALUATE.out.metrics.map { _meta, csv -> csv }.collect().ifEmpty([]),
        failures,
        pages.map { files, _sheet -> files },
        case_sheet,
        models,
        params.atlas ? file(params.atlas, checkIfExists: true) : []
    )

    emit:
    seg     = POSTPROCESS.out.seg
    metrics = EVALUATE.out.metrics
    report  = REPORT.out.html
}

// Where the i-th staged file lies in a task that stages a list as 'DIR/f?????/*' (1-based index).
def stagedName(dir, index, file) {
    return "${dir}/f${String.format('%05d', index)}/${file.name}"
}

// [every file of the rows [case id, role, file], the case_id,role,path CSV naming each as REPORT
// stages them (cases/fNNNNN/<name>)]: `gliocascade report --case-files` reads it.
def caseFilesSet(rows) {
    def files = []
    def lines = ['case_id,role,path']
    rows.each { id, role, f ->
        files << f
        lines << [id, role, stagedName('cases', files.size(), f)].join(',')
    }
    return [files, lines.join('\n') + '\n']
}
